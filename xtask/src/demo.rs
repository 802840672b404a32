//! `cargo xtask demo`.
use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> Result<()> {
    bail!("demo is not built yet")
}
