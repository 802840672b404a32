//! The Kubernetes executor against a local HTTPS test server: no cluster runs here, so a
//! small HTTP/1.1 server with a certificate from our CA records what kube-rs sends and
//! answers as an API server would. The requests are checked: cordon = PATCH of the node with
//! `spec.unschedulable: true`, eviction = POST to the pod's `eviction` subresource, rollback
//! = PATCH with `unschedulable: false`. A workload known only by its cgroup is found by the
//! pod UID in the path among the node's pods (GET of the pods with `spec.nodeName`). A refused eviction (429, a disruption budget) fails.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use truce_arbiter::federation::executor::MigrationExecutor;
use truce_arbiter::federation::kube::{KubeExecutor, KubeTarget};
use truce_arbiter::federation::{MigrationOrder, OrderAction, OrderRole};
use truce_arbiter::server::tls::{load_certs, load_key};
use truce_common::model::{HostId, Timestamp, WorkloadId, WorkloadRef};
use truce_common::wire::{MigrationProposal, MigrationWorkload, PodRef, ProposalId};
use truce_tests::loopback::Pki;

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn serve_one(stream: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor, log: Log, refuse_evictions: bool) -> anyhow::Result<()> {
    let tls = acceptor.accept(stream).await?;
    let mut rd = BufReader::new(tls);
    loop {
        let mut request_line = String::new();
        if rd.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut len, mut auth) = (0usize, None);
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse()?,
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        let (status, reply) = if path.starts_with("/api/v1/nodes/") && method == "PATCH" {
            let name = path.trim_start_matches("/api/v1/nodes/").split('?').next().unwrap_or("");
            let unschedulable = body.contains("\"unschedulable\":true");
            (200, format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}},"spec":{{"unschedulable":{unschedulable}}}}}"#))
        } else if path.starts_with("/api/v1/pods") && method == "GET" {
            // The node's pods: one whose UID the cgroup-only workload names, and a neighbour.
            let pod = |ns: &str, name: &str, uid: &str| format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"namespace":"{ns}","name":"{name}","uid":"{uid}"}}}}"#);
            let items = [pod("batch", "etl-0", POD_UID), pod("batch", "etl-1", "99999999-7d1e-4b8a-9c2d-112233445566")].join(",");
            (200, format!(r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{"resourceVersion":"1"}},"items":[{items}]}}"#))
        } else if path.contains("/eviction") && method == "POST" {
            if refuse_evictions {
                (429, r#"{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","message":"Cannot evict pod as it would violate the pod's disruption budget.","reason":"TooManyRequests","code":429}"#.to_string())
            } else {
                (201, r#"{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Success","code":201}"#.to_string())
            }
        } else {
            (404, r#"{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#.to_string())
        };
        log.lock().map_err(|_| anyhow::anyhow!("log poisoned"))?.push(Seen { method, path, auth, body });
        let head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", reply.len());
        let w = rd.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(reply.as_bytes()).await?;
        w.flush().await?;
    }
}

/// A local HTTPS server on 127.0.0.1 with the arbiter certificate (SAN 127.0.0.1, localhost).
async fn api_server(pki: &Pki, refuse_evictions: bool) -> anyhow::Result<(String, Log)> {
    let dir = pki.path();
    let certs = load_certs(&dir.join("arbiter.pem"))?;
    let key = load_key(&dir.join("arbiter.key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), l.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, acceptor, log, refuse_evictions).await {
                    eprintln!("test api server: {e:#}");
                }
            });
        }
    });
    Ok((format!("https://127.0.0.1:{}", addr.port()), log))
}

/// The pod the cgroup-only workload is in, as the kubelet's systemd driver names its cgroup.
const POD_UID: &str = "0f3c2a55-7d1e-4b8a-9c2d-112233445566";
const POD_CGROUP: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3c2a55_7d1e_4b8a_9c2d_112233445566.slice/cri-containerd-4f1e.scope";

fn order(action: OrderAction) -> MigrationOrder {
    let w = |i: u64, ns: &str| MigrationWorkload {
        workload: WorkloadRef { id: WorkloadId(i), path: format!("/kubepods/w{i}") },
        demand: 0.1,
        criticality: 1,
        pod: Some(PodRef { namespace: ns.into(), name: format!("web-{i}") }),
    };
    MigrationOrder {
        action,
        role: OrderRole::Source,
        proposal: MigrationProposal {
            id: ProposalId { site: "site-a".into(), seq: 1 },
            destination: "site-b".into(),
            priority: 5,
            host: HostId("node-7".into()),
            overload_probability: 0.9,
            overload_level: 0.9,
            threshold: 0.5,
            history: vec![0.8, 0.85, 0.9],
            horizon_steps: 5,
            // Two named pods, one known only by its cgroup (what a site observes), and one
            // cgroup that is no pod (skipped with a warning).
            workloads: vec![
                w(1, "shop"),
                w(2, "ads"),
                MigrationWorkload { workload: WorkloadRef { id: WorkloadId(3), path: POD_CGROUP.into() }, demand: 0.1, criticality: 1, pod: None },
                MigrationWorkload { workload: WorkloadRef { id: WorkloadId(4), path: "/system.slice/backup.service".into() }, demand: 0.1, criticality: 1, pod: None },
            ],
            at: Timestamp(0),
            alternative_to: None,
        },
        share: 0.8,
    }
}

async fn executor(pki: &Pki, url: String) -> anyhow::Result<KubeExecutor> {
    let token = pki.path().join("token");
    std::fs::write(&token, "s3cret-token")?;
    Ok(KubeExecutor::connect(&KubeTarget { api_server: Some(url), ca_cert: Some(pki.ca()), token_file: Some(token) }).await?)
}

#[tokio::test]
async fn kube_executor_cordons_and_evicts_against_a_local_https_test_server() -> anyhow::Result<()> {
    let pki = Pki::new("kube-exec")?;
    let (url, log) = api_server(&pki, false).await?;
    let exec = executor(&pki, url).await?;
    exec.execute(&order(OrderAction::Migrate)).await?;
    exec.execute(&order(OrderAction::Rollback)).await?;
    let mut dest = order(OrderAction::Migrate);
    dest.role = OrderRole::Destination;
    exec.execute(&dest).await?;
    let seen = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let summary: Vec<(String, String)> = seen.iter().map(|s| (s.method.clone(), s.path.split('?').next().unwrap_or("").to_string())).collect();
    assert_eq!(
        summary,
        vec![
            ("PATCH".to_string(), "/api/v1/nodes/node-7".to_string()),
            ("GET".to_string(), "/api/v1/pods".to_string()),
            ("POST".to_string(), "/api/v1/namespaces/shop/pods/web-1/eviction".to_string()),
            ("POST".to_string(), "/api/v1/namespaces/ads/pods/web-2/eviction".to_string()),
            ("POST".to_string(), "/api/v1/namespaces/batch/pods/etl-0/eviction".to_string()),
            ("PATCH".to_string(), "/api/v1/nodes/node-7".to_string()),
        ],
        "the destination role sends nothing"
    );
    assert!(seen[0].body.contains("\"unschedulable\":true"), "cordon: {}", seen[0].body);
    assert!(seen[5].body.contains("\"unschedulable\":false"), "uncordon: {}", seen[5].body);
    // Only the source node's pods are listed.
    assert!(seen[1].path.contains("fieldSelector=spec.nodeName%3Dnode-7"), "pod list: {}", seen[1].path);
    let eviction: serde_json::Value = serde_json::from_str(&seen[2].body)?;
    assert_eq!(eviction["metadata"]["name"], "web-1", "{eviction}");
    assert!(seen.iter().all(|s| s.auth.as_deref() == Some("Bearer s3cret-token")), "{seen:?}");
    Ok(())
}

#[tokio::test]
async fn kube_executor_reports_a_refused_eviction_from_a_local_https_test_server() -> anyhow::Result<()> {
    let pki = Pki::new("kube-exec-pdb")?;
    let (url, _log) = api_server(&pki, true).await?;
    let exec = executor(&pki, url).await?;
    let err = exec.execute(&order(OrderAction::Migrate)).await.expect_err("the disruption budget refuses");
    assert!(format!("{err:#}").contains("evict pod shop/web-1"), "{err:#}");
    Ok(())
}
