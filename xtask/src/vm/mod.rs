//! The qemu VM harness (see shared/VM-HARNESS.md).
use anyhow::{Result, bail};

#[derive(clap::Args)]
#[derive(Default)]
pub struct SetupArgs {}
#[derive(clap::Args)]
pub struct TestArgs {
    /// Which kernel: 6.12, 6.1 or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Only tests whose name contains this.
    pub filter: Option<String>,
}
#[derive(clap::Args)]
pub struct ShellArgs {
    #[arg(long, default_value = "6.12")]
    pub kernel: String,
}

pub fn setup(_: &SetupArgs) -> Result<()> {
    bail!("vm-setup is not built yet")
}
pub fn test(_: &TestArgs) -> Result<()> {
    bail!("vm-test is not built yet")
}
pub fn shell(_: &ShellArgs) -> Result<()> {
    bail!("vm-shell is not built yet")
}
