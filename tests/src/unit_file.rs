//! Reading a systemd unit the way systemd would for the few directives the install test
//! reproduces: the ExecStart command line and the capability bounding set.
use anyhow::{Context, Result, bail};

/// The values of `key` in the `[section]` of a unit, in order (a directive may repeat).
pub fn values(unit: &str, section: &str, key: &str) -> Vec<String> {
    let mut in_section = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
        } else if in_section
            && !line.starts_with('#')
            && !line.starts_with(';')
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            out.push(v.trim().to_string());
        }
    }
    out
}

/// ExecStart split into words, `${NAME}` replaced from `env` (systemd's own expansion).
pub fn exec_start(unit: &str, env: &[(&str, &str)]) -> Result<Vec<String>> {
    let all = values(unit, "Service", "ExecStart");
    let [line] = all.as_slice() else { bail!("expected one ExecStart, found {}", all.len()) };
    let mut words = Vec::new();
    for w in line.split_whitespace() {
        let mut w = w.to_string();
        for (name, value) in env {
            w = w.replace(&format!("${{{name}}}"), value);
        }
        if w.contains("${") {
            bail!("ExecStart word {w:?} names a variable the test does not provide");
        }
        words.push(w);
    }
    Ok(words)
}

/// `CapabilityBoundingSet=` as capability numbers (the last assignment wins, as in systemd;
/// an empty one means none).
pub fn bounding_set(unit: &str) -> Result<Vec<u32>> {
    let Some(last) = values(unit, "Service", "CapabilityBoundingSet").pop() else {
        bail!("the unit sets no CapabilityBoundingSet");
    };
    last.split_whitespace().map(|name| capability_number(name).with_context(|| format!("unknown capability {name}"))).collect()
}

fn capability_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "[Unit]\nDescription=x\n[Service]\n# ExecStart=/not/this\nExecStart=/usr/bin/a serve --certs ${CREDENTIALS_DIRECTORY}\nCapabilityBoundingSet=CAP_SYS_ADMIN\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n";

    #[test]
    fn exec_start_expands_variables_and_skips_comments() {
        let argv = exec_start(UNIT, &[("CREDENTIALS_DIRECTORY", "/etc/truce/certs")]).expect("parses");
        assert_eq!(argv, vec!["/usr/bin/a", "serve", "--certs", "/etc/truce/certs"]);
        assert!(exec_start(UNIT, &[]).is_err(), "an unexpanded variable is an error");
    }

    #[test]
    fn the_last_bounding_set_wins_and_names_map_to_numbers() {
        assert_eq!(bounding_set(UNIT).expect("parses"), vec![39, 38, 12]);
        assert_eq!(bounding_set("[Service]\nCapabilityBoundingSet=\n").expect("empty"), Vec::<u32>::new());
        assert!(bounding_set("[Service]\nCapabilityBoundingSet=CAP_NOPE\n").is_err());
    }
}
