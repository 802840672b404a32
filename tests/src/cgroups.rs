//! Test cgroups under the real cgroup2 mount, removed on drop even when a test fails.
use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// This process's cgroup v2 path, relative to the cgroup2 mount (`/` for the root cgroup).
pub fn own_cgroup() -> Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).context("no cgroup v2 line in /proc/self/cgroup")?;
    Ok(rel.trim().to_string())
}

/// `<cgroup2 mount>/truce-test-<pid>-<tag>`: a private subtree for one test.
#[derive(Debug)]
pub struct TestCgroupTree {
    root: PathBuf,
    children: Vec<PathBuf>,
}

/// One child cgroup of a [`TestCgroupTree`].
#[derive(Clone, Debug)]
pub struct TestCgroup {
    pub path: PathBuf,
    /// The cgroup v2 id: the directory's inode, what `bpf_get_current_cgroup_id` returns.
    pub id: u64,
}

impl TestCgroupTree {
    pub fn new(tag: &str) -> Result<Self> {
        let mount = truce_agent::probes::cgroup2_mount().context("finding the cgroup2 mount")?;
        let root = mount.join(format!("truce-test-{}-{tag}", std::process::id()));
        if root.exists() {
            remove_cgroup(&root)?;
        }
        fs::create_dir(&root).with_context(|| format!("creating test cgroup {}", root.display()))?;
        Ok(Self { root, children: Vec::new() })
    }

    pub fn child(&mut self, name: &str) -> Result<TestCgroup> {
        let path = self.root.join(name);
        fs::create_dir(&path).with_context(|| format!("creating test cgroup {}", path.display()))?;
        let id = fs::metadata(&path)?.ino();
        self.children.push(path.clone());
        Ok(TestCgroup { path, id })
    }
}

impl TestCgroup {
    /// The `cgroup.procs` file a child process writes its pid into.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// `usage_usec` from cpu.stat (present in cgroup v2 even without the cpu controller).
    pub fn cpu_usage_usec(&self) -> Result<u64> {
        let text = fs::read_to_string(self.path.join("cpu.stat")).context("reading cpu.stat")?;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("usage_usec ") {
                return v.trim().parse().context("parsing usage_usec");
            }
        }
        bail!("cpu.stat of {} has no usage_usec", self.path.display())
    }

}

/// rmdir a cgroup, retrying while its last processes are being reaped.
fn remove_cgroup(path: &Path) -> Result<()> {
    for _ in 0..50 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
    fs::remove_dir(path).with_context(|| format!("removing test cgroup {}", path.display()))
}

impl Drop for TestCgroupTree {
    fn drop(&mut self) {
        for child in self.children.iter().rev() {
            if let Err(err) = remove_cgroup(child) {
                eprintln!("test cleanup: {err:#}");
            }
        }
        if let Err(err) = remove_cgroup(&self.root) {
            eprintln!("test cleanup: {err:#}");
        }
    }
}
