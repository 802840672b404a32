//! Which pod a workload is, from its cgroup path. The agent knows workloads by cgroup; the
//! Kubernetes executor evicts pods by namespace and name. The kubelet names each pod's cgroup
//! after the pod's UID, under either cgroup driver:
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/…`,
//!   with the UID's dashes written as underscores (a dash separates slice levels);
//! - cgroupfs: `/kubepods/burstable/pod<uid>/…`.
//!
//! The UID then finds the pod among those bound to the node (the API has no field selector
//! on `metadata.uid`). Pure: no I/O here.

/// The pod UID in a kubelet-made cgroup path, if the path is inside a pod's cgroup.
pub fn pod_uid(cgroup_path: &str) -> Option<String> {
    let mut inside_kubepods = false;
    for part in cgroup_path.split('/') {
        if part == "kubepods" || part.starts_with("kubepods.") || part.starts_with("kubepods-") {
            inside_kubepods = true;
        }
        if !inside_kubepods {
            continue;
        }
        let candidate = if let Some(slice) = part.strip_suffix(".slice") {
            slice.rsplit_once("-pod").map(|(_, uid)| uid.replace('_', "-"))
        } else {
            part.strip_prefix("pod").map(str::to_string)
        };
        if let Some(uid) = candidate.filter(|u| is_uid(u)) {
            return Some(uid);
        }
    }
    None
}

/// A UID as Kubernetes writes it: 8-4-4-4-12 hexadecimal digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::pod_uid;

    const UID: &str = "0f3c2a55-7d1e-4b8a-9c2d-112233445566";

    #[test]
    fn both_cgroup_drivers_name_the_pod_uid() {
        let systemd = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3c2a55_7d1e_4b8a_9c2d_112233445566.slice/cri-containerd-4f1e.scope";
        assert_eq!(pod_uid(systemd).as_deref(), Some(UID));
        // Guaranteed pods sit directly under kubepods.
        assert_eq!(pod_uid("/kubepods.slice/kubepods-pod0f3c2a55_7d1e_4b8a_9c2d_112233445566.slice").as_deref(), Some(UID));
        assert_eq!(pod_uid(&format!("/kubepods/besteffort/pod{UID}/a1b2c3")).as_deref(), Some(UID));
        assert_eq!(pod_uid(&format!("/kubepods/pod{UID}")).as_deref(), Some(UID));
    }

    #[test]
    fn paths_outside_pods_name_none() {
        assert_eq!(pod_uid("/system.slice/nginx.service"), None);
        assert_eq!(pod_uid("/kubepods.slice/kubepods-burstable.slice"), None);
        // A pod-looking name outside kubepods is someone else's.
        assert_eq!(pod_uid(&format!("/user.slice/pod{UID}")), None);
        // Not a UID.
        assert_eq!(pod_uid("/kubepods/burstable/podcast"), None);
        assert_eq!(pod_uid("/kubepods.slice/kubepods-podzz.slice"), None);
        assert_eq!(pod_uid(""), None);
    }
}
