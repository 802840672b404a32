//! Carrying out an accepted migration. [`CommandHook`] runs a program with the order as JSON
//! on stdin; [`super::kube::KubeExecutor`] cordons and evicts through the Kubernetes API.

use super::site::MigrationOrder;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use erased::Tag;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("could not encode the migration order")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("could not start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: PathBuf, status: String, stderr: String },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: PathBuf, timeout: Duration },
    #[error("Kubernetes API request to {what} failed")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Kubernetes client setup failed: {reason}")]
    KubeConfig { reason: String },
}

/// What an executor did, for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecReport {
    pub summary: String,
}

pub type ExecFuture<'a> = Pin<Box<dyn Future<Output = Result<ExecReport, ExecError>> + Send + 'a>>;

pub trait MigrationExecutor: Send + Sync {
    fn execute<'a>(&'a self, order: &'a MigrationOrder) -> ExecFuture<'a>;
}

/// `program args...` with the order as JSON on stdin and `TRUCE_MIGRATION_ACTION` /
/// `TRUCE_MIGRATION_ROLE` in the environment. Exit 0 is success; anything else fails the
/// order with the program's stderr.
#[derive(Clone, Debug)]
pub struct CommandHook {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl MigrationExecutor for CommandHook {
    fn execute<'a>(&'a self, order: &'a MigrationOrder) -> ExecFuture<'a> {
        Box::pin(async move {
            let json = serde_json::to_vec(order).map_err(|source| ExecError::Encode { source })?;
            let mut child = tokio::process::Command::new(&self.program)
                .args(&self.args)
                .env("TRUCE_MIGRATION_ACTION", order.action.tag())
                .env("TRUCE_MIGRATION_ROLE", order.role.tag())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| ExecError::Spawn { program: self.program.clone(), source })?;
            if let Some(mut stdin) = child.stdin.take() {
                // A hook that does not read its input is its own business; a broken pipe is not our failure.
                let _ = stdin.write_all(&json).await;
            }
            let out = tokio::time::timeout(self.timeout, child.wait_with_output())
                .await
                .map_err(|_| ExecError::Timeout { program: self.program.clone(), timeout: self.timeout })?
                .map_err(|source| ExecError::Spawn { program: self.program.clone(), source })?;
            if !out.status.success() {
                return Err(ExecError::Failed {
                    program: self.program.clone(),
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(ExecReport { summary: format!("{} exited 0: {}", self.program.display(), String::from_utf8_lossy(&out.stdout).trim()) })
        })
    }
}

mod erased {
    use super::super::site::{OrderAction, OrderRole};

    /// The snake_case name serde gives the variant, for the hook's environment.
    pub trait Tag {
        fn tag(&self) -> &'static str;
    }

    impl Tag for OrderAction {
        fn tag(&self) -> &'static str {
            match self {
                OrderAction::Migrate => "migrate",
                OrderAction::Rollback => "rollback",
                OrderAction::Confirm => "confirm",
            }
        }
    }

    impl Tag for OrderRole {
        fn tag(&self) -> &'static str {
            match self {
                OrderRole::Source => "source",
                OrderRole::Destination => "destination",
            }
        }
    }
}
