//! The Prometheus endpoint shared by agent and arbiter: `GET /metrics` answers the
//! OpenMetrics text of a prometheus-client registry over plain HTTP/1.1 (hyper).
//!
//! Both daemons bind it to loopback by default: the figures name workloads and hosts, and
//! there is no authentication here; put a scraper on the same host or a TLS proxy in front.

mod parse;

pub use parse::{ParseError, Sample, parse_exposition};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `/metrics` answers with (OpenMetrics 1.0 text; Prometheus reads it natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapes served at once; more wait for a slot (a scraper is one client, not a crowd).
const MAX_CONNECTIONS: usize = 16;
/// A connection that has not finished its exchange in this time is dropped.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to bind the metrics endpoint on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running `/metrics` endpoint; it stops when the token given to [`MetricsServer::bind`] is
/// cancelled (await [`MetricsServer::join`] to be sure the socket is closed).
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Bind `addr` (port 0 picks one) and serve `registry` until `cancel`.
    pub async fn bind(addr: SocketAddr, registry: Arc<Registry>, cancel: CancellationToken) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %local, "serving /metrics");
        let task = tokio::spawn(accept_loop(listener, registry, cancel));
        Ok(MetricsServer { addr: local, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(cause) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(%cause, "metrics endpoint could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &registry)) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(cause)) => tracing::debug!(%peer, %cause, "metrics connection failed"),
                    Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
                },
            }
        });
    }
}

fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => reply(StatusCode::OK, CONTENT_TYPE, body),
                Err(cause) => {
                    tracing::warn!(%cause, "encoding metrics failed");
                    reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "encoding metrics failed\n".into())
                }
            }
        }
        "/" => reply(StatusCode::OK, "text/plain", "truce: metrics are at /metrics\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found; metrics are at /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_the_registry_as_openmetrics_and_refuses_the_rest() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        c.inc_by(3);
        registry.register("truce_test_things", "Things.", c);
        let cancel = CancellationToken::new();
        let server = MetricsServer::bind("127.0.0.1:0".parse().expect("addr"), Arc::new(registry), cancel.clone()).await.expect("bind");
        let addr = server.local_addr();
        let reply = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains(&format!("content-type: {CONTENT_TYPE}")), "{head}");
        let samples = parse_exposition(body).expect("valid exposition");
        assert_eq!(samples.iter().find(|s| s.name == "truce_test_things_total").map(|s| s.value), Some(3.0));
        let missing = get(addr, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        cancel.cancel();
        server.join().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the socket is closed after cancel");
    }
}
