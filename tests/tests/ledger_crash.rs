//! A real child process appends ledger commands to redb and is SIGKILLed mid-stream; every
//! command it acknowledged must be there after reopening.
//!
//! The child is this test binary re-executed with `--exact ledger_crash_child --ignored` and
//! the database path in `TRUCE_LEDGER_CRASH_CHILD`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command as Process, Stdio};
use truce_arbiter::ledger::{AccountId, Command, Ledger, LedgerOptions, LedgerState, WorkloadKey};
use truce_common::model::{Credits, HostId, Timestamp, WorkloadId};

const CHILD_ENV: &str = "TRUCE_LEDGER_CRASH_CHILD";
/// Acknowledgements to see before the kill.
const KILL_AFTER: u64 = 150;

fn key(i: u64) -> WorkloadKey {
    WorkloadKey::new(&HostId("crash-host".into()), WorkloadId(i % 3))
}

/// The i-th command of a deterministic stream that always applies: income first, then accruals
/// and transfers that the accrued income covers.
fn command(i: u64) -> Command {
    match i {
        0..=2 => Command::SetIncome {
            who: key(i),
            per_second: Credits(1_000_000),
            at: Timestamp(0),
        },
        _ if i % 2 == 1 => Command::Accrue {
            host: HostId("crash-host".into()),
            now: Timestamp(i * 1000),
        },
        _ => Command::Transfer {
            from: AccountId::Workload(key(i)),
            to: AccountId::Workload(key(i + 1)),
            amount: Credits(1 + (i % 7) as i64),
        },
    }
}

#[test]
#[ignore = "child process of ledger_survives_sigkill_without_losing_acknowledged_commands"]
fn ledger_crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        panic!(
            "run only as the child of ledger_survives_sigkill_without_losing_acknowledged_commands"
        );
    };
    let mut ledger = Ledger::open_with(&path, LedgerOptions { snapshot_every: 40 })
        .expect("child opens the ledger");
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        ledger.apply(&command(i)).expect("child command applies");
        // Printed only after the commit returned: this line is the acknowledgement.
        writeln!(out, "ack {i}")
            .and_then(|_| out.flush())
            .expect("parent reads acks");
    }
}

#[test]
fn ledger_survives_sigkill_without_losing_acknowledged_commands() {
    let dir = std::env::temp_dir().join(format!("truce-ledger-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ledger.redb");

    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Process::new(exe)
        .args([
            "--exact",
            "ledger_crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked: Option<u64> = None;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest prints "test ledger_crash_child ... " without a newline before the body runs,
        // so the first acknowledgement shares its line.
        let ack = line
            .find("ack ")
            .and_then(|at| line[at + 4..].trim().parse::<u64>().ok());
        if let Some(n) = ack {
            assert_eq!(n, acked.map_or(0, |a| a + 1), "acks arrive in order");
            acked = Some(n);
            if n >= KILL_AFTER && !killed {
                // std's Child::kill sends SIGKILL: no destructor, no flush, no chance to finish.
                child.kill().expect("SIGKILL the child");
                killed = true;
            }
        }
    }
    let status = child.wait().expect("reap the child");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child died of SIGKILL, not on its own: {status:?}"
    );
    let acked = acked.expect("the child acknowledged commands");
    assert!(acked >= KILL_AFTER);

    let ledger = Ledger::open(&path).expect("reopen after the crash");
    let applied = ledger.state().applied();
    assert!(
        applied > acked,
        "every acknowledged command survives: {applied} applied, {} acked",
        acked + 1
    );
    // The durable state is exactly the replay of the first `applied` commands.
    let mut replay = LedgerState::new();
    for i in 0..applied {
        replay.apply(&command(i)).expect("replay applies");
    }
    assert_eq!(ledger.state(), &replay);
    assert_eq!(ledger.state().check_conservation(), Ok(()));
    let _ = std::fs::remove_dir_all(&dir);
}
