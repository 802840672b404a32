//! The edge between the pure market and the persistent ledger: run a round, apply its
//! commands durably, and only then hand out its decisions.

use super::book::{HostBook, WorkloadSpec};
use super::round::RoundOutcome;
use super::{Market, MarketError};
use super::ledger_port::{Commit, LedgerPort, StateRef, WriteError};
use crate::ledger::{Command, WorkloadKey};
use std::collections::{BTreeMap, BTreeSet};
use truce_common::model::{Bid, Credits, HostId, LeaseId, Resource, Timestamp, WorkloadId};

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("host {host} is not registered with the market")]
    UnknownHost { host: HostId },
    #[error("market round failed on host {host}")]
    Market {
        host: HostId,
        #[source]
        source: MarketError,
    },
    #[error("ledger write failed for host {host}")]
    Ledger {
        host: HostId,
        #[source]
        source: Box<WriteError>,
    },
}

pub struct Exchange {
    ledger: LedgerPort,
    market: Market,
    books: BTreeMap<HostId, HostBook>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("ledger", &self.ledger)
            .field("hosts", &self.books.len())
            .finish()
    }
}

impl Exchange {
    pub fn new(ledger: impl Into<LedgerPort>, market: Market) -> Exchange {
        Exchange {
            ledger: ledger.into(),
            market,
            books: BTreeMap::new(),
        }
    }

    pub fn ledger(&self) -> StateRef<'_> {
        self.ledger.state()
    }

    pub fn book(&self, host: &HostId) -> Option<&HostBook> {
        self.books.get(host)
    }

    pub fn books(&self) -> impl Iterator<Item = &HostBook> {
        self.books.values()
    }

    pub fn into_ledger(self) -> LedgerPort {
        self.ledger
    }

    /// Register or update a host: its capacity and the workloads present now. A workload new to
    /// the ledger gets `income` per second from `now` (the configured income schedule); one that
    /// is no longer listed has vanished, and its loans default on the next round.
    pub fn set_host(
        &mut self,
        mut book: HostBook,
        income: &BTreeMap<WorkloadId, Credits>,
        now: Timestamp,
    ) -> Result<(), ExchangeError> {
        let host = book.host.clone();
        let mut cmds = Vec::new();
        for (w, rate) in income {
            let who = WorkloadKey::new(&host, *w);
            if self.ledger.state().income(&who).map(|s| s.per_second) != Some(rate.0) {
                cmds.push(Command::SetIncome {
                    who,
                    per_second: *rate,
                    at: now,
                });
            }
        }
        if !cmds.is_empty() {
            let results =
                self.ledger
                    .apply_batch(&cmds)
                    .map_err(|source| ExchangeError::Ledger {
                        host: host.clone(),
                        source: Box::new(source),
                    })?;
            for (cmd, r) in cmds.iter().zip(results) {
                if let Some(cause) = r {
                    tracing::warn!(host = %host, command = ?cmd, cause = %cause, "income not configured");
                }
            }
        }
        if let Some(old) = self.books.remove(&host) {
            book.round = book.round.max(old.round);
            book.breach_at = old.breach_at;
        }
        self.books.insert(host, book);
        Ok(())
    }

    /// Replace the workloads present on a host (the agent's latest inventory).
    pub fn set_workloads(
        &mut self,
        host: &HostId,
        workloads: BTreeMap<WorkloadId, WorkloadSpec>,
    ) -> Result<(), ExchangeError> {
        self.book_mut(host)?.workloads = workloads;
        Ok(())
    }

    /// Refresh what a host's workloads used (the agent's latest report); the book is otherwise
    /// unchanged.
    pub fn set_usage(
        &mut self,
        host: &HostId,
        usage: BTreeMap<(WorkloadId, Resource), u64>,
    ) -> Result<(), ExchangeError> {
        self.book_mut(host)?.usage = usage;
        Ok(())
    }

    fn book_mut(&mut self, host: &HostId) -> Result<&mut HostBook, ExchangeError> {
        self.books
            .get_mut(host)
            .ok_or_else(|| ExchangeError::UnknownHost { host: host.clone() })
    }

    /// Resolve a round and persist it; returns the full outcome (decisions whose lease command
    /// the ledger refused are dropped, with a warning).
    pub fn round(
        &mut self,
        host: &HostId,
        bids: &[Bid],
        now: Timestamp,
    ) -> Result<RoundOutcome, ExchangeError> {
        self.submit_round(host, bids, now)?.finish()
    }

    /// Resolve a round and hand its commands to the ledger; the next round (of any host) sees
    /// them. [`PendingRound::finish`] waits for them without holding the exchange, so the
    /// replicated ledger can commit the rounds of many hosts in one raft entry.
    pub fn submit_round(
        &mut self,
        host: &HostId,
        bids: &[Bid],
        now: Timestamp,
    ) -> Result<PendingRound, ExchangeError> {
        let book = self
            .books
            .get(host)
            .ok_or_else(|| ExchangeError::UnknownHost { host: host.clone() })?;
        // The read view is dropped before the write: the replicated ledger applies under its lock.
        let resolved = self.market.resolve(book, bids, &self.ledger.state(), now);
        let outcome = resolved.map_err(|source| ExchangeError::Market {
            host: host.clone(),
            source,
        })?;
        let commit = self.ledger.submit(outcome.commands.clone());
        if let Some(book) = self.books.get_mut(host) {
            book.advance(&outcome);
        }
        Ok(PendingRound { host: host.clone(), outcome, commit })
    }
}

/// A round whose commands are on their way into the ledger.
#[derive(Debug)]
pub struct PendingRound {
    host: HostId,
    outcome: RoundOutcome,
    commit: Commit,
}

impl PendingRound {
    /// Wait until the ledger applied the round's commands (blocks on a replicated ledger: call
    /// from a blocking thread); its decisions are those whose lease commands applied.
    pub fn finish(self) -> Result<RoundOutcome, ExchangeError> {
        let PendingRound { host, mut outcome, commit } = self;
        let results = commit.wait().map_err(|source| ExchangeError::Ledger {
            host: host.clone(),
            source: Box::new(source),
        })?;
        let mut refused: BTreeSet<LeaseId> = BTreeSet::new();
        for (cmd, result) in outcome.commands.iter().zip(&results) {
            if let Some(cause) = result {
                tracing::warn!(host = %host, command = ?cmd, cause = %cause, "ledger refused a market command");
                match cmd {
                    Command::OpenLease { terms } => {
                        refused.insert(terms.id);
                    }
                    Command::RenewLease { id, .. } => {
                        refused.insert(*id);
                    }
                    _ => {}
                }
            }
        }
        outcome.decisions.retain(|d| !refused.contains(&d.lease.id));
        for (bid, why) in &outcome.rejected {
            tracing::debug!(host = %host, bid = bid.0, code = %why.code, detail = %why.detail, "bid set aside");
        }
        Ok(outcome)
    }
}
