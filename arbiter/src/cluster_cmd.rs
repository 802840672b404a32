//! `truce-arbiter cluster status|add|remove`: membership changes are commands sent to a
//! replica's raft endpoint (QUIC, ALPN `truce-raft/1`, a peer certificate). Add and remove
//! must reach the leader: a follower's answer names it, and the command is sent there once.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use truce_arbiter::peer::{PeerEndpoint, PeerTls};
use truce_common::wire::{ClusterMember, ClusterOp, ClusterRequest, ClusterStatus, Message, RAFT_ALPN};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show the group as one replica sees it: leader, term, log position, members.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Add a replica: it catches up as a learner, then becomes a voter (start it first, with
    /// `cluster.enabled` and without `cluster.bootstrap`).
    Add {
        #[command(flatten)]
        target: Target,
        /// The new replica's id (unique, above 0).
        #[arg(long)]
        id: u64,
        /// Its peer certificate's name.
        #[arg(long)]
        name: String,
        /// Its raft endpoint, ip:port.
        #[arg(long)]
        raft_addr: SocketAddr,
        /// Where agents reach it, ip:port (named in redirects).
        #[arg(long)]
        agent_addr: SocketAddr,
    },
    /// Remove a replica (a voter, or a learner left by an unfinished add) from the group;
    /// then stop it. An id that is not a member is an error.
    Remove {
        #[command(flatten)]
        target: Target,
        /// The id of the replica to remove.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Args)]
pub struct Target {
    /// A replica to ask, as NAME@IP:PORT (its peer certificate's name and raft endpoint).
    #[arg(long, env = "TRUCE_ARBITER_REPLICA")]
    replica: String,
    /// The directory with ca.pem and the peer certificates.
    #[arg(long, env = "TRUCE_ARBITER_CERTS", default_value = "/etc/truce/certs")]
    certs: PathBuf,
    /// Whose peer certificate to present (a member of the group); default: the replica's own.
    #[arg(long = "as")]
    as_peer: Option<String>,
    /// How long to wait for the answer, in ms. The leader waits up to 20 s for an added
    /// replica to catch up before it promotes it; a shorter timeout here gives up on the answer,
    /// not the add (run the same add again to see it finish).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

fn parse_replica(s: &str) -> Result<(String, SocketAddr)> {
    let (name, addr) = s.split_once('@').with_context(|| format!("--replica {s:?}: expected NAME@IP:PORT"))?;
    let addr = addr.parse().with_context(|| format!("--replica {s:?}: {addr:?} is not an ip:port"))?;
    Ok((name.to_string(), addr))
}

pub fn run(cmd: ClusterCommand) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            ClusterCommand::Status { target, json } => {
                let status = ask(&target, ClusterOp::Status).await?;
                if json {
                    println!("{}", serde_json::to_string(&status_json(&status)).context("encoding the status")?);
                } else {
                    print!("{}", render(&status));
                }
                Ok(())
            }
            ClusterCommand::Add { target, id, name, raft_addr, agent_addr } => {
                let member = ClusterMember { id, name, raft_addr: raft_addr.to_string(), agent_addr: agent_addr.to_string(), voter: true };
                let status = change(&target, ClusterOp::Add { member }).await.with_context(|| {
                    format!("adding replica {id}: the leader waits until it caught up, so it must be running and reachable at {raft_addr} (until then `cluster status` lists it as a learner)")
                })?;
                eprintln!("replica {id} added");
                print!("{}", render(&status));
                Ok(())
            }
            ClusterCommand::Remove { target, id } => {
                let status = change(&target, ClusterOp::Remove { id }).await?;
                eprintln!("replica {id} removed");
                print!("{}", render(&status));
                Ok(())
            }
        }
    })
}

async fn request(target: &Target, name: &str, addr: SocketAddr, op: ClusterOp) -> Result<ClusterStatus> {
    let me = target.as_peer.clone().unwrap_or_else(|| name.to_string());
    let tls = PeerTls::in_dir(&target.certs, &me);
    let peers = BTreeMap::from([(name.to_string(), addr)]);
    let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().context("bind address")?;
    let endpoint = PeerEndpoint::bind(bind, &tls, RAFT_ALPN, peers)
        .with_context(|| format!("loading the peer certificate {me:?} from {} (--certs, --as)", target.certs.display()))?;
    let timeout = Duration::from_millis(target.timeout_ms);
    let answer = endpoint.request(name, &Message::ClusterRequest(ClusterRequest { seq: 1, op }), timeout).await;
    endpoint.close();
    match answer.with_context(|| format!("asking replica {name} at {addr}"))? {
        Message::ClusterStatus(s) => Ok(s),
        other => bail!("replica {name} at {addr} answered with {} instead of cluster_status", other.name()),
    }
}

async fn ask(target: &Target, op: ClusterOp) -> Result<ClusterStatus> {
    let (name, addr) = parse_replica(&target.replica)?;
    let status = request(target, &name, addr, op).await?;
    match &status.error {
        Some(e) => bail!("replica {} refused: {e}", status.id),
        None => Ok(status),
    }
}

/// Send a membership change to the leader: to `--replica`, and once more to the leader it names.
async fn change(target: &Target, op: ClusterOp) -> Result<ClusterStatus> {
    let (name, addr) = parse_replica(&target.replica)?;
    let status = request(target, &name, addr, op.clone()).await?;
    let Some(error) = &status.error else { return Ok(status) };
    let leader = status.leader.filter(|l| *l != status.id).and_then(|l| status.members.iter().find(|m| m.id == l));
    let Some(leader) = leader else { bail!("replica {} refused: {error}", status.id) };
    let leader_addr: SocketAddr = leader.raft_addr.parse().with_context(|| format!("leader {} has raft address {:?}", leader.id, leader.raft_addr))?;
    let again = request(target, &leader.name, leader_addr, op).await?;
    match &again.error {
        Some(e) => bail!("leader {} ({}) refused: {e}", again.id, leader.name),
        None => Ok(again),
    }
}

fn render(s: &ClusterStatus) -> String {
    let mut out = format!(
        "replica {} answered: term {}, leader {}, last log index {}, applied {}\n",
        s.id,
        s.term,
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.last_log_index.map_or("-".into(), |i| i.to_string()),
        s.last_applied.map_or("-".into(), |i| i.to_string()),
    );
    out.push_str(&format!("{:>4}  {:<16} {:<22} {:<22} {}\n", "id", "name", "raft_addr", "agent_addr", "role"));
    for m in &s.members {
        let role = if Some(m.id) == s.leader { "leader" } else if m.voter { "voter" } else { "learner" };
        out.push_str(&format!("{:>4}  {:<16} {:<22} {:<22} {role}\n", m.id, m.name, m.raft_addr, m.agent_addr));
    }
    out
}

fn status_json(s: &ClusterStatus) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "leader": s.leader,
        "term": s.term,
        "last_log_index": s.last_log_index,
        "last_applied": s.last_applied,
        "members": s.members.iter().map(|m| serde_json::json!({
            "id": m.id, "name": m.name, "raft_addr": m.raft_addr, "agent_addr": m.agent_addr, "voter": m.voter,
        })).collect::<Vec<_>>(),
    })
}
