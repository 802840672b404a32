//! `cargo xtask test`.
use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> Result<()> {
    bail!("test is not built yet")
}
