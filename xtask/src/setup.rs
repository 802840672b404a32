//! `cargo xtask setup`.
use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> Result<()> {
    bail!("setup is not built yet")
}
