//! The Kubernetes executor: on the source site a migration cordons the source node and
//! evicts the migrating pods through the API (kube-rs), so their controllers reschedule them
//! off that node. A workload the proposal names only by cgroup (what a site observes) is
//! found by the pod UID in its cgroup path among the node's pods ([`super::pod_cgroup`]).
//! The destination cluster's own deployment tooling brings them up there. Rollback and confirm
//! uncordon the node. The destination role has nothing to do here.

use super::executor::{ExecError, ExecFuture, ExecReport, MigrationExecutor};
use super::pod_cgroup::pod_uid;
use super::site::{MigrationOrder, OrderAction, OrderRole};
use truce_common::wire::PodRef;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams};
use std::collections::HashMap;
use std::path::PathBuf;

/// Where the API server is. Without `api_server` the usual inference applies (KUBECONFIG,
/// `~/.kube/config`, then the in-cluster service account).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeTarget {
    pub api_server: Option<String>,
    /// PEM CA bundle that signed the API server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// File holding a bearer token (e.g. a service account token).
    pub token_file: Option<PathBuf>,
}

pub struct KubeExecutor {
    client: kube::Client,
}

impl std::fmt::Debug for KubeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeExecutor")
    }
}

impl KubeExecutor {
    pub async fn connect(target: &KubeTarget) -> Result<KubeExecutor, ExecError> {
        let bad = |reason: String| ExecError::KubeConfig { reason };
        let config = match &target.api_server {
            None => kube::Config::infer().await.map_err(|e| bad(e.to_string()))?,
            Some(url) => {
                let mut config = kube::Config::new(url.parse().map_err(|e| bad(format!("api_server {url:?}: {e}")))?);
                if let Some(ca) = &target.ca_cert {
                    let ders = crate::server::tls::load_certs(ca).map_err(|e| bad(format!("ca_cert: {e}")))?;
                    config.root_cert = Some(ders.into_iter().map(|d| d.as_ref().to_vec()).collect());
                }
                config.auth_info.token_file = target.token_file.as_ref().map(|p| p.display().to_string());
                config
            }
        };
        // A refused eviction (a disruption budget: 429) is an answer, not a hiccup: kube's
        // default retry would hold the site's loop for minutes. The site decides what next.
        let mut config = config;
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(KubeExecutor { client })
    }

    /// The pods bound to `node`, by UID.
    async fn pods_on(&self, node: &str) -> Result<HashMap<String, PodRef>, kube::Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| {
                let m = p.metadata;
                Some((m.uid?, PodRef { namespace: m.namespace?, name: m.name? }))
            })
            .collect())
    }

    async fn run(&self, order: &MigrationOrder) -> Result<ExecReport, ExecError> {
        let node = order.proposal.host.0.as_str();
        let nodes: Api<Node> = Api::all(self.client.clone());
        let kube_err = |what: String| move |source| ExecError::Kube { what, source: Box::new(source) };
        match (order.role, order.action) {
            (OrderRole::Destination, _) => Ok(ExecReport { summary: "destination: nothing to do in this cluster".into() }),
            (OrderRole::Source, OrderAction::Migrate) => {
                nodes.cordon(node).await.map_err(kube_err(format!("cordon node {node}")))?;
                // Workloads the proposal names by cgroup only: their pods, by UID, among the
                // node's pods (listed once, only if needed).
                let by_uid = if order.proposal.workloads.iter().any(|w| w.pod.is_none()) {
                    self.pods_on(node).await.map_err(kube_err(format!("list the pods on node {node}")))?
                } else {
                    HashMap::new()
                };
                let mut evicted = Vec::new();
                for w in &order.proposal.workloads {
                    let pod = match (&w.pod, pod_uid(&w.workload.path)) {
                        (Some(pod), _) => pod.clone(),
                        (None, None) => {
                            tracing::warn!(workload = %w.workload.path, "not a pod's cgroup; the Kubernetes executor cannot move it");
                            continue;
                        }
                        (None, Some(uid)) => match by_uid.get(&uid) {
                            Some(pod) => pod.clone(),
                            None => {
                                tracing::warn!(workload = %w.workload.path, %uid, %node, "no pod with this UID on the node (gone already?); nothing to evict");
                                continue;
                            }
                        },
                    };
                    let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                    pods.evict(&pod.name, &EvictParams::default()).await.map_err(kube_err(format!("evict pod {}/{}", pod.namespace, pod.name)))?;
                    evicted.push(format!("{}/{}", pod.namespace, pod.name));
                }
                Ok(ExecReport { summary: format!("cordoned {node}, evicted {}", evicted.join(", ")) })
            }
            (OrderRole::Source, OrderAction::Rollback | OrderAction::Confirm) => {
                nodes.uncordon(node).await.map_err(kube_err(format!("uncordon node {node}")))?;
                Ok(ExecReport { summary: format!("uncordoned {node}") })
            }
        }
    }
}

impl MigrationExecutor for KubeExecutor {
    fn execute<'a>(&'a self, order: &'a MigrationOrder) -> ExecFuture<'a> {
        Box::pin(self.run(order))
    }
}
