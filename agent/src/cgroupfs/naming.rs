//! Naming a workload from its cgroup path: systemd unit, container, or Kubernetes pod.
//!
//! Covers the layouts of the systemd and cgroupfs drivers for Docker, containerd (cri) and
//! CRI-O, and both kubelet drivers (`kubepods.slice/...pod<uid>.slice` with underscores,
//! `kubepods/<qos>/pod<uid>` with dashes).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WorkloadKind {
    Root,
    SystemdUnit { unit: String },
    Container { runtime: String, id: String },
    Pod { uid: String, qos: String },
    PodContainer { uid: String, qos: String, runtime: String, container: String },
    Path,
}

impl WorkloadKind {
    /// A short label for tables: `nginx.service`, `docker:0123456789ab`, `pod/1f2e…/ctr:abcd`.
    pub fn label(&self, path: &str) -> String {
        match self {
            WorkloadKind::Root => "/".into(),
            WorkloadKind::SystemdUnit { unit } => unit.clone(),
            WorkloadKind::Container { runtime, id } => format!("{runtime}:{}", short(id)),
            WorkloadKind::Pod { uid, .. } => format!("pod/{}", short(uid)),
            WorkloadKind::PodContainer { uid, runtime, container, .. } => {
                format!("pod/{}/{runtime}:{}", short(uid), short(container))
            }
            WorkloadKind::Path => path.trim_start_matches('/').to_string(),
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, or a bare `<id>`.
fn container_of(component: &str) -> Option<(String, String)> {
    let base = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "crio"), ("libpod-", "podman")] {
        if let Some(id) = base.strip_prefix(prefix)
            && is_container_id(id)
        {
            return Some((runtime.to_string(), id.to_string()));
        }
    }
    is_container_id(base).then(|| ("container".to_string(), base.to_string()))
}

/// `kubepods-burstable-pod<uid>.slice` or `pod<uid>`; the systemd driver escapes `-` as `_`.
fn pod_of(component: &str) -> Option<String> {
    let base = component.strip_suffix(".slice").unwrap_or(component);
    let idx = base.rfind("pod")?;
    let uid = &base[idx + 3..];
    let ok = uid.len() >= 32 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_' || b == b'-');
    ok.then(|| uid.replace('_', "-"))
}

fn qos_of(path: &str) -> String {
    if path.contains("besteffort") {
        "besteffort".into()
    } else if path.contains("burstable") {
        "burstable".into()
    } else {
        "guaranteed".into()
    }
}

/// Classify a cgroup path relative to the cgroup2 mount (`/` is the root).
pub fn classify(path: &str) -> WorkloadKind {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some(last) = parts.last() else { return WorkloadKind::Root };
    if parts.first().is_some_and(|p| p.starts_with("kubepods")) {
        let pod = parts.iter().rev().find_map(|p| pod_of(p));
        if let Some(uid) = pod {
            let qos = qos_of(path);
            return match container_of(last) {
                Some((runtime, container)) => WorkloadKind::PodContainer { uid, qos, runtime, container },
                None => WorkloadKind::Pod { uid, qos },
            };
        }
    }
    if let Some((runtime, id)) = container_of(last) {
        return WorkloadKind::Container { runtime, id };
    }
    if last.ends_with(".service") || last.ends_with(".scope") || last.ends_with(".slice") {
        return WorkloadKind::SystemdUnit { unit: last.to_string() };
    }
    WorkloadKind::Path
}

#[cfg(test)]
mod tests {
    use super::*;
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn systemd_units() {
        assert_eq!(classify("/system.slice/nginx.service"), WorkloadKind::SystemdUnit { unit: "nginx.service".into() });
        assert_eq!(classify("/"), WorkloadKind::Root);
        assert_eq!(classify("/system.slice/nginx.service").label("/system.slice/nginx.service"), "nginx.service");
    }

    #[test]
    fn docker_both_drivers() {
        let want = WorkloadKind::Container { runtime: "docker".into(), id: ID.into() };
        assert_eq!(classify(&format!("/system.slice/docker-{ID}.scope")), want);
        assert_eq!(
            classify(&format!("/docker/{ID}")),
            WorkloadKind::Container { runtime: "container".into(), id: ID.into() }
        );
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f60718.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            classify(&p),
            WorkloadKind::PodContainer {
                uid: "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718".into(),
                qos: "burstable".into(),
                runtime: "containerd".into(),
                container: ID.into()
            }
        );
    }

    #[test]
    fn kubernetes_cgroupfs_driver_pod_level() {
        let p = "/kubepods/besteffort/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718";
        assert_eq!(
            classify(p),
            WorkloadKind::Pod { uid: "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718".into(), qos: "besteffort".into() }
        );
    }

    #[test]
    fn plain_paths_stay_paths() {
        assert_eq!(classify("/truce-test/burner"), WorkloadKind::Path);
        assert_eq!(classify("/truce-test/burner").label("/truce-test/burner"), "truce-test/burner");
    }
}
