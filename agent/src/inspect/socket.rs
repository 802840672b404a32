//! The agent's unix socket for `truce top --agent`. Root only: the file is created 0600
//! (umask held while binding, then chmod), and a peer whose uid is neither root nor ours is
//! refused even if the permissions were loosened by hand.
//!
//! Exchange: `hello` -> `welcome` (host, period), `subscribe` -> `ack`, `host_history`
//! frames, then one `host_view` per period. A slow client skips to the newest view.

use super::feed::{HISTORY_PER_FRAME, HostFeed};
use super::frames::{StreamFrameError, read_frame, write_frame};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use truce_common::wire::{self, Ack, ErrorCode, ErrorMessage, HostView, MAX_FRAME_BYTES, Message, SessionId, UnsupportedVersion, Welcome};

/// Clients served at once; more are told `overloaded` and closed.
const MAX_CLIENTS: usize = 8;
/// Time a client has for `hello` and for `subscribe`.
const HANDSHAKE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another process already serves {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; remove it or set another inspect.socket")]
    NotASocket { path: PathBuf },
    #[error("failed to inspect {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the socket directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to bind {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to restrict {path} to its owner")]
    Chmod {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Views = watch::Receiver<Option<Arc<HostView>>>;

pub struct InspectSocket {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl InspectSocket {
    /// Create the socket (and its directory, 0700, if missing) and serve until `cancel`.
    pub fn bind(path: &Path, feed: Arc<Mutex<HostFeed>>, views: Views, cancel: CancellationToken) -> Result<InspectSocket, SocketError> {
        let listener = listen(path)?;
        tracing::info!(socket = %path.display(), "serving the host view for truce top");
        let task = tokio::spawn(accept_loop(listener, feed, views, cancel));
        Ok(InspectSocket { path: path.to_path_buf(), task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait for the server to stop (cancel its token first) and remove the socket file.
    pub async fn shutdown(self) {
        let _ = self.task.await;
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(socket = %self.path.display(), cause = %e, "socket file already gone");
        }
    }
}

fn listen(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| SocketError::Dir { path: dir.to_path_buf(), source })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live server answers; a stale file (a crash) refuses and is replaced.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse { path: path.to_path_buf() });
            }
            std::fs::remove_file(path).map_err(|source| SocketError::Bind { path: path.to_path_buf(), source })?;
        }
        Ok(_) => return Err(SocketError::NotASocket { path: path.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SocketError::Stat { path: path.to_path_buf(), source }),
    }
    // The file must never exist with looser permissions, not even between bind and chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|source| SocketError::Bind { path: path.to_path_buf(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| SocketError::Chmod { path: path.to_path_buf(), source })?;
    Ok(listener)
}

async fn accept_loop(listener: UnixListener, feed: Arc<Mutex<HostFeed>>, views: Views, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let sessions = Arc::new(AtomicU64::new(1));
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(cause) => {
                    tracing::warn!(%cause, "inspect socket could not accept a client");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let uid = stream.peer_cred().map(|c| c.uid()).ok();
        if !uid.is_some_and(|u| u == 0 || u == me) {
            tracing::warn!(uid = ?uid, "refused an inspect client that is neither root nor the agent's user");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(limit = MAX_CLIENTS, "too many inspect clients; refused one");
            let mut stream = stream;
            tokio::spawn(async move {
                let msg = Message::Error(ErrorMessage { seq: None, code: ErrorCode::OVERLOADED, message: format!("at most {MAX_CLIENTS} clients") });
                let _ = write_frame(&mut stream, &msg, MAX_FRAME_BYTES).await;
            });
            continue;
        };
        let session = SessionId(sessions.fetch_add(1, Ordering::Relaxed));
        let (feed, views, cancel) = (feed.clone(), views.clone(), cancel.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match serve_client(stream, session, &feed, views, &cancel).await {
                Ok(()) | Err(StreamFrameError::Closed) => tracing::debug!(%session, "inspect client left"),
                Err(e) => tracing::info!(%session, cause = %crate::probes::error_chain(&e), "inspect client dropped"),
            }
        });
    }
}

async fn refuse(stream: &mut UnixStream, code: ErrorCode, message: String) -> Result<(), StreamFrameError> {
    tracing::info!(%code, %message, "inspect client refused");
    write_frame(stream, &Message::Error(ErrorMessage { seq: None, code, message }), MAX_FRAME_BYTES).await
}

async fn serve_client(mut stream: UnixStream, session: SessionId, feed: &Mutex<HostFeed>, mut views: Views, cancel: &CancellationToken) -> Result<(), StreamFrameError> {
    let max = MAX_FRAME_BYTES;
    let hello = match tokio::time::timeout(HANDSHAKE, read_frame(&mut stream, max)).await {
        Ok(Ok(Message::Hello(h))) => h,
        Ok(Ok(other)) => return refuse(&mut stream, ErrorCode::UNEXPECTED_MESSAGE, format!("expected hello, got {}", other.name())).await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return refuse(&mut stream, ErrorCode::TIMEOUT, "no hello in time".into()).await,
    };
    let Some(version) = wire::negotiate(hello.min, hello.max) else {
        let msg = Message::UnsupportedVersion(UnsupportedVersion { supported_min: wire::VERSION_MIN, supported_max: wire::VERSION_MAX });
        return write_frame(&mut stream, &msg, max).await;
    };
    let (host, period_ms) = {
        let f = feed.lock().unwrap_or_else(|p| p.into_inner());
        (f.host().clone(), f.period_ms())
    };
    write_frame(&mut stream, &Message::Welcome(Welcome { version, session, host, round_ms: period_ms }), max).await?;
    let seq = match tokio::time::timeout(HANDSHAKE, read_frame(&mut stream, max)).await {
        Ok(Ok(Message::Subscribe(s))) => s.seq,
        Ok(Ok(other)) => return refuse(&mut stream, ErrorCode::UNEXPECTED_MESSAGE, format!("expected subscribe, got {}", other.name())).await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return refuse(&mut stream, ErrorCode::TIMEOUT, "no subscribe in time".into()).await,
    };
    write_frame(&mut stream, &Message::Ack(Ack { seq }), max).await?;
    let history = feed.lock().unwrap_or_else(|p| p.into_inner()).history(HISTORY_PER_FRAME);
    for frame in history {
        write_frame(&mut stream, &Message::HostHistory(frame), max).await?;
    }
    // The current view at once, then every new one.
    views.mark_changed();
    let (mut rd, mut wr) = stream.into_split();
    // Clients send nothing more; a reader of its own notices when they leave (a read
    // inside the select below could be cut mid-frame).
    let mut reader = tokio::spawn(async move {
        loop {
            if let Err(e) = read_frame(&mut rd, max).await {
                return e;
            }
        }
    });
    let end = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let bye = Message::Error(ErrorMessage { seq: None, code: ErrorCode::SHUTTING_DOWN, message: "agent shutting down".into() });
                break write_frame(&mut wr, &bye, max).await;
            }
            changed = views.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let view = views.borrow_and_update().clone();
                if let Some(view) = view
                    && let Err(e) = write_frame(&mut wr, &Message::HostView((*view).clone()), max).await
                {
                    break Err(e);
                }
            }
            gone = &mut reader => break match gone {
                Ok(e) => Err(e),
                Err(_) => Ok(()),
            },
        }
    };
    reader.abort();
    end
}
