//! `cargo xtask bench ingest [--agents 100,1000,2000] [--total-rate N] [--seconds S] [--round-ms R]
//! [--paths echo-v1,arbiter-v1,echo-v2,arbiter-v2,echo-v3,arbiter-v3]`: builds and runs the
//! ingest driver (tests/src/bin/ingest_bench.rs) in release mode. It prints the codec-only
//! figures and, per agent count, the echo baseline next to the real arbiter, each with
//! protocol version 1 (a frame per bid), 2 (a `bids` frame per tick) and 3 (packed `bids` and
//! `decisions`); paste the table into docs/benchmarks.md ("ingest") with this command.
use crate::util::{run_step, workspace_root};
use anyhow::Result;

pub fn run(rest: &[String]) -> Result<()> {
    let mut cmd = crate::util::cargo();
    cmd.current_dir(workspace_root())
        .args(["run", "--release", "--quiet", "-p", "truce-tests", "--bin", "ingest_bench", "--"])
        .args(rest);
    run_step("bench ingest", &mut cmd)
}
