//! `cargo xtask bench <name>`: side-by-side benchmarks recorded in docs/benchmarks.md.
use anyhow::{Result, bail};

mod forecast;
mod host_arbiter;
mod ingest;
mod mitigation;
mod overhead;
mod reaction;
mod round;

pub use host_arbiter::HostArbiter;

/// `NAME VALUE`, parsed, or `default` when the flag is absent. A flag without a value, or
/// with one that does not parse, is an error naming it (a typo must not run a ten-minute
/// benchmark with the default instead).
fn flag<T: std::str::FromStr>(rest: &[String], name: &str, default: T) -> Result<T> {
    let Some(i) = rest.iter().position(|a| a == name) else { return Ok(default) };
    let value = rest.get(i + 1).ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
    value.parse().map_err(|_| anyhow::anyhow!("{name}: {value:?} is not a valid value"))
}

/// A flag's comma-separated list of numbers (`--vcpus 1,2`, `--periods 500,1000`).
fn numbers<T: std::str::FromStr>(list: &str, flag: &str) -> Result<Vec<T>> {
    list.split(',').map(|v| v.trim().parse().map_err(|_| anyhow::anyhow!("{flag}: {list:?} is not a comma-separated list of numbers"))).collect()
}

/// `on` or `off`: one value of a switch list (`--onset off,on`, `--io-hog on,off`).
struct OnOff(bool);

impl std::str::FromStr for OnOff {
    type Err = ();
    fn from_str(s: &str) -> Result<OnOff, ()> {
        match s.trim() {
            "on" => Ok(OnOff(true)),
            "off" => Ok(OnOff(false)),
            _ => Err(()),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Which benchmark: overhead, ingest, forecast, round, reaction, mitigation.
    pub name: String,
    /// Extra arguments for the benchmark.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    match args.name.as_str() {
        "overhead" => overhead::run(&args.rest),
        "forecast" => forecast::run(&args.rest),
        "ingest" => ingest::run(&args.rest),
        "round" => round::run(&args.rest),
        "reaction" => reaction::run(&args.rest),
        "mitigation" => mitigation::run(&args.rest),
        other => bail!("unknown benchmark `{other}`; known: overhead, ingest, forecast, round, reaction, mitigation"),
    }
}
