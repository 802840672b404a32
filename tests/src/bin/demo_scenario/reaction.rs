//! `truce-demo-scenario reaction`: from the antagonist's start next to a running victim, with
//! truce up, to truce's first cgroup write (`cargo xtask bench reaction`).
use super::{arg, mount, opt_arg, refs, remote_arbiter, victim_args};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use truce_tests::proc::thread_cpu_ns;
use truce_tests::scenario::{CPU_HOG, Setup, VICTIM, wait_for};

/// Time from the antagonist's start to truce's first write, over `trials` runs.
pub fn run(args: &[String]) -> Result<()> {
    let dir: PathBuf = arg(args, "--dir", PathBuf::from("/tmp/truce-reaction"))?;
    let trials: u32 = arg(args, "--trials", 5)?;
    let mut s = Setup::new(&dir, &mount()?);
    s.period_ms = arg(args, "--period-ms", 500)?;
    s.round_ms = arg(args, "--round-ms", 100)?;
    s.pressure_onset = arg(args, "--onset", "on".to_string())? != "off";
    s.lease_ms = 10_000;
    s.remote = remote_arbiter(args)?;
    s.trace_agent = args.iter().any(|a| a == "--trace");
    s.system_weight = opt_arg(args, "--system-weight")?;
    s.agent_cpu_policy = opt_arg(args, "--agent-policy")?;
    let poller: Poller = arg(args, "--poller", "pread".to_string())?.parse()?;
    let mut times = Vec::new();
    for trial in 1..=trials {
        s.prepare()?;
        let _ = std::fs::remove_file(s.journal());
        let originals = s.knobs();
        let arbiter = s.start_arbiter_anywhere()?;
        let agent = s.start_agent()?;
        let _victim = s.start_load(VICTIM, &refs(&victim_args(&s, 600)))?;
        // Quiet first: the agent is up (status written) and the victim runs alone for a while.
        wait_for(Duration::from_secs(120), || {
            s.status().filter(|st| !st.workloads.is_empty()).map(|_| ())
        })
        .context("the agent never wrote its status")?;
        std::thread::sleep(Duration::from_secs(5));
        if s.knobs() != originals {
            println!("trial {trial}: truce acted before any antagonist ran; skipped");
            continue;
        }
        let knobs = KnobFiles::open(&s)?;
        let onset = Instant::now();
        let onset_unix_ms = truce_agent::cmd::sampler::now().0;
        let _hog = s.start_load(CPU_HOG, &["cpu", "--seconds", "600"])?;
        let poll = match poller {
            Poller::Reopen => wait_poll(onset, Duration::from_secs(60), || s.knobs() != originals),
            Poller::Pread => wait_poll(onset, Duration::from_secs(60), || knobs.changed()),
        };
        let acted = poll.acted;
        match acted {
            Some(t) => {
                println!(
                    "{}",
                    json!({"reaction_ms": t.as_secs_f64() * 1000.0, "trial": trial, "period_ms": s.period_ms, "onset": s.pressure_onset, "arbiter": if s.remote.is_some() { "remote" } else { "here" }, "system_weight": s.system_weight, "agent_policy": s.agent_cpu_policy, "onset_unix_ms": onset_unix_ms, "poller": poller.name(), "poll_cpu_ms": poll.cpu.as_secs_f64() * 1000.0, "polls": poll.polls})
                );
                times.push(t);
            }
            None => println!("trial {trial}: no write within 60 s"),
        }
        agent.terminate(Duration::from_secs(30));
        arbiter.terminate(Duration::from_secs(10));
        drop(_hog);
        drop(_victim);
        if s.trace_agent {
            // From a period before the onset to a moment after the write (or 3 s without one).
            let to = acted.map_or(3000, |t| t.as_millis() as i64 + 100);
            let log = std::fs::read_to_string(s.dir.join("agent.log")).unwrap_or_default();
            let events: Vec<Value> = truce_tests::agent_trace::timeline(&log, onset_unix_ms, -(s.period_ms as i64), to)
                .into_iter()
                .map(|(ms, message, fields)| json!([ms, message, fields]))
                .collect();
            println!("{}", json!({"trace": trial, "period_ms": s.period_ms, "onset": s.pressure_onset, "events": events}));
        }
    }
    s.remove_cgroups();
    if times.is_empty() {
        bail!("truce reacted in none of the {trials} trials");
    }
    Ok(())
}

/// How the trial watches the knobs. Under TCG the watcher is a neighbour of the agent on the
/// guest's one vCPU for the whole trial, so what it costs slows the reaction it measures.
#[derive(Clone, Copy)]
enum Poller {
    /// Every knob file opened, read and closed each poll (`Setup::knobs`, 15 paths).
    Reopen,
    /// The knob files opened once and read again at offset 0 each poll.
    Pread,
}

impl std::str::FromStr for Poller {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Poller> {
        match s {
            "reopen" => Ok(Poller::Reopen),
            "pread" => Ok(Poller::Pread),
            other => bail!("--poller: {other:?} is neither reopen nor pread"),
        }
    }
}

impl Poller {
    fn name(self) -> &'static str {
        match self {
            Poller::Reopen => "reopen",
            Poller::Pread => "pread",
        }
    }
}

/// The knob files truce may write (those that exist), each held open with its value before
/// the onset. A cgroup interface file is generated afresh by every read at offset 0.
struct KnobFiles(Vec<(std::fs::File, Vec<u8>)>);

impl KnobFiles {
    fn open(s: &Setup) -> Result<KnobFiles> {
        let mut files = Vec::new();
        for (cgroup, file, _) in s.knobs() {
            let path = s.cgroup(&cgroup).join(&file);
            let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let original = read_from_start(&f).with_context(|| format!("reading {}", path.display()))?;
            files.push((f, original));
        }
        Ok(KnobFiles(files))
    }

    /// Whether any knob reads differently from before. An unreadable one counts as changed,
    /// as with the reopening watcher, whose list then loses the file: truce never removes a
    /// cgroup, so in a trial that only happens when the scenario itself goes wrong.
    fn changed(&self) -> bool {
        self.0.iter().any(|(f, original)| read_from_start(f).map_or(true, |now| &now != original))
    }
}

fn read_from_start(f: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    // The knob files hold a line or a few: one read of a page returns them whole.
    let mut buf = [0u8; 4096];
    let n = f.read_at(&mut buf, 0)?;
    Ok(buf[..n].to_vec())
}

/// What a wait for the first write saw: when it came (from the onset), and what the watching
/// cost this thread.
struct Poll {
    acted: Option<Duration>,
    cpu: Duration,
    polls: u64,
}

/// Poll every millisecond until `f` holds, for at most `limit` from `start`.
fn wait_poll(start: Instant, limit: Duration, mut f: impl FnMut() -> bool) -> Poll {
    let cpu_before = thread_cpu_ns();
    let mut polls = 0;
    let mut acted = None;
    while start.elapsed() < limit {
        polls += 1;
        if f() {
            acted = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Poll { acted, cpu: Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu_before)), polls }
}
