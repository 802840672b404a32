//! The arbiter's Prometheus metrics. Server counters are read from [`ServerStats`] at scrape
//! time; the round duration is a histogram; prices, credits, reputation and lease counts are
//! each host's figures as of its last round, dropped when its session ends.

use super::resolver::MarketView;
use super::state::ServerStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use truce_common::model::HostId;

/// One host's market as of its last round.
#[derive(Clone, Debug, Default)]
struct HostFigures {
    leases: u64,
    market: Option<MarketView>,
}

#[derive(Debug)]
pub(crate) struct ArbiterMetrics {
    registry: Arc<Registry>,
    round_duration: Histogram,
    hosts: Arc<Mutex<BTreeMap<HostId, HostFigures>>>,
}

#[derive(Debug)]
struct ServerCollector {
    stats: Arc<ServerStats>,
    hosts: Arc<Mutex<BTreeMap<HostId, HostFigures>>>,
}

impl ArbiterMetrics {
    pub fn new(stats: Arc<ServerStats>) -> ArbiterMetrics {
        let mut registry = Registry::default();
        // 50 µs .. ~3.3 s: a proportional round is microseconds, a 20-workload LP milliseconds.
        let round_duration = Histogram::new(exponential_buckets(50e-6, 2.0, 17));
        registry.register(
            "truce_arbiter_round_duration_seconds",
            "Time to resolve one host's market round (resolver, numbering, lease bookkeeping)",
            round_duration.clone(),
        );
        let hosts = Arc::new(Mutex::new(BTreeMap::new()));
        registry.register_collector(Box::new(ServerCollector { stats, hosts: hosts.clone() }));
        ArbiterMetrics { registry: Arc::new(registry), round_duration, hosts }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    pub fn observe_round(&self, seconds: f64, host: &HostId, leases: usize, market: Option<MarketView>) {
        self.round_duration.observe(seconds);
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.insert(host.clone(), HostFigures { leases: leases as u64, market });
    }

    pub fn forget_host(&self, host: &HostId) {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).remove(host);
    }
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            ("truce_arbiter_connections_accepted", "QUIC connections accepted (before TLS)", get(&s.connections_accepted)),
            ("truce_arbiter_connections_refused", "Connections refused at the connection limit", get(&s.connections_refused)),
            ("truce_arbiter_handshakes_failed", "TLS handshakes that failed or carried no host identity", get(&s.handshakes_failed)),
            ("truce_arbiter_sessions_opened", "Host sessions opened", get(&s.sessions_opened)),
            ("truce_arbiter_frames_rejected", "Frames refused as malformed (the connection was closed)", get(&s.frames_rejected)),
            ("truce_arbiter_reports", "Reports received", get(&s.reports)),
            ("truce_arbiter_bids", "Bids received", get(&s.bids)),
            ("truce_arbiter_refusals", "Requests refused with an error code", get(&s.refusals)),
            ("truce_arbiter_rounds", "Market rounds run", get(&s.rounds)),
            ("truce_arbiter_decisions", "Decisions sent", get(&s.decisions)),
            ("truce_arbiter_throttled", "Times an agent's token bucket was empty and its stream was paused", get(&s.throttled)),
            ("truce_arbiter_inspect_skipped", "Inspection events skipped by subscribers that fell behind", get(&s.inspect_skipped)),
        ];
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        gauge(&mut encoder, "truce_arbiter_sessions", "Host sessions open now", s.sessions_active.load(Ordering::Relaxed) as i64)?;
        gauge(&mut encoder, "truce_arbiter_observers", "Observer sessions (truce top) open now", s.observers_active.load(Ordering::Relaxed) as i64)?;

        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        {
            let g = ConstGauge::new(0i64);
            let mut m = encoder.encode_descriptor("truce_arbiter_leases", "Live leases per host after its last round", None, g.metric_type())?;
            for (host, f) in &hosts {
                ConstGauge::new(f.leases as i64).encode(m.encode_family(&[("host", host.0.as_str())])?)?;
            }
        }
        {
            let g = ConstGauge::new(0.0f64);
            let mut m = encoder.encode_descriptor("truce_arbiter_price", "Market price per host and resource, credits per unit per second", None, g.metric_type())?;
            for (host, f) in &hosts {
                for p in f.market.iter().flat_map(|m| &m.prices) {
                    let resource = p.resource.to_string();
                    ConstGauge::new(p.price).encode(m.encode_family(&[("host", host.0.as_str()), ("resource", resource.as_str())])?)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0.0f64);
            let mut credits = encoder.encode_descriptor("truce_arbiter_credits", "Credits a workload holds (ledger balance)", None, g.metric_type())?;
            for (host, f) in &hosts {
                for a in f.market.iter().flat_map(|m| &m.accounts) {
                    let workload = a.workload.0.to_string();
                    ConstGauge::new(a.credits.as_credits()).encode(credits.encode_family(&[("host", host.0.as_str()), ("workload", workload.as_str())])?)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut rep = encoder.encode_descriptor("truce_arbiter_reputation", "A workload's reputation score (borrower and lender)", None, g.metric_type())?;
            for (host, f) in &hosts {
                for a in f.market.iter().flat_map(|m| &m.accounts) {
                    let workload = a.workload.0.to_string();
                    ConstGauge::new(a.reputation).encode(rep.encode_family(&[("host", host.0.as_str()), ("workload", workload.as_str())])?)?;
                }
            }
        }
        Ok(())
    }
}
