//! Connections to the agents: kept open and reused, a few per node, and every command
//! written to the agent log with its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nodes::Node;
use crate::slave_link::{AgentClient, Command, LinkError, Reply};
use crate::store::Db;

pub struct Links {
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<HashMap<i64, Vec<AgentClient>>>,
    timeout: Duration,
    db: Db,
}

/// How a command appears in the log: everything but bulk data (a template's bytes).
pub fn describe(cmd: &Command) -> String {
    match cmd {
        Command::PutTemplate { info, offset, data } => {
            format!(
                "[\"{}\", \"{}\", {}, {offset}, ({} bytes)]",
                info.name,
                info.sha256,
                info.size,
                data.len()
            )
        }
        other => serde_json::to_string(&other.to_request().arguments).unwrap_or_default(),
    }
}

impl Links {
    pub fn new(db: Db, tls: Arc<rustls::ClientConfig>, timeout: Duration) -> Links {
        Links {
            tls,
            idle: Mutex::new(HashMap::new()),
            timeout,
            db,
        }
    }

    /// A connection of its own (for long transfers that should not hold a shared one).
    pub async fn connect(&self, node: &Node) -> Result<AgentClient, LinkError> {
        let name = crate::domain::NodeName::parse(&node.name).map_err(|e| LinkError::Tls {
            node: node.name.clone(),
            message: e.message,
        })?;
        let client =
            AgentClient::connect(&node.address, &name, self.tls.clone(), self.timeout).await?;
        let client = client.check_pin(&node.name, node.cert_sha256.as_deref())?;
        if node.cert_sha256.is_none() {
            // Enrolled before pins: the first certificate seen is the one from now on.
            let (db, id, fp) = (
                self.db.clone(),
                node.id,
                client.peer_fingerprint().to_string(),
            );
            let _ = tokio::task::spawn_blocking(move || {
                db.write(|tx| crate::records::nodes::set_cert(tx, id, &fp))
            })
            .await;
        }
        Ok(client)
    }

    /// Sends on one connection and keeps it for later if it is still good.
    async fn call_on(
        &self,
        node: &Node,
        mut client: AgentClient,
        cmd: &Command,
    ) -> Result<Reply, LinkError> {
        let r = client.call(cmd).await;
        if r.is_ok() {
            self.idle
                .lock()
                .expect("links")
                .entry(node.id)
                .or_default()
                .push(client);
        }
        r
    }

    /// Forgets a node's idle connections (its address or certificate changed).
    pub fn forget(&self, node_id: i64) {
        self.idle.lock().expect("links").remove(&node_id);
    }

    /// Sends one command to a node's agent and logs it (node, job, slice, command, arguments,
    /// code, answer, duration).
    pub async fn call(
        &self,
        node: &Node,
        job: Option<i64>,
        slice: Option<i64>,
        cmd: &Command,
    ) -> Result<Reply, LinkError> {
        let started = Instant::now();
        let pooled = self
            .idle
            .lock()
            .expect("links")
            .get_mut(&node.id)
            .and_then(|v| v.pop());
        let result = match pooled {
            Some(client) => match self.call_on(node, client, cmd).await {
                // A kept connection the agent closed meanwhile (it restarted): once more on a
                // new one. Every command is idempotent, so this is always safe.
                Err(LinkError::Closed | LinkError::Io(_)) => match self.connect(node).await {
                    Ok(fresh) => self.call_on(node, fresh, cmd).await,
                    Err(e) => Err(e),
                },
                other => other,
            },
            None => match self.connect(node).await {
                Ok(fresh) => self.call_on(node, fresh, cmd).await,
                Err(e) => Err(e),
            },
        };
        let ms = started.elapsed().as_millis() as i64;
        let (code, returned) = match &result {
            Ok(r) => (Some(r.code as i64), r.text()),
            Err(e) => (None, e.to_string()),
        };
        let (node_id, command, args) = (node.id, cmd.name(), describe(cmd));
        let db = self.db.clone();
        let logged = tokio::task::spawn_blocking(move || {
            db.write(|tx| {
                crate::records::agent_log::insert(
                    tx,
                    &crate::records::agent_log::Sent {
                        node_id,
                        job_id: job,
                        slice_id: slice,
                        command,
                        arguments: &args,
                        code,
                        returned: &returned,
                        duration_ms: ms,
                    },
                )
            })
        })
        .await;
        if !matches!(logged, Ok(Ok(()))) {
            tracing::warn!(node = %node.name, command, "could not write the agent log");
        }
        result
    }
}
