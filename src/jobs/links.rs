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
        let (result, sent) = self.call_unlogged(node, job, slice, cmd).await;
        let db = self.db.clone();
        let logged = tokio::task::spawn_blocking(move || {
            db.write(|tx| crate::records::agent_log::insert(tx, &sent))
        })
        .await;
        if !matches!(logged, Ok(Ok(()))) {
            tracing::warn!(node = %node.name, command = cmd.name(), "could not write the agent log");
        }
        result
    }

    /// [`Links::call`] with the log entry given back to write, for a step that records it in
    /// the transaction of its own checkpoint (one commit where there were two).
    pub async fn call_unlogged(
        &self,
        node: &Node,
        job: Option<i64>,
        slice: Option<i64>,
        cmd: &Command,
    ) -> (Result<Reply, LinkError>, crate::records::agent_log::Sent) {
        let at = crate::store::now();
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
        let (code, returned) = match &result {
            Ok(r) => (Some(r.code as i64), r.summary()),
            Err(e) => (None, e.to_string()),
        };
        let sent = crate::records::agent_log::Sent {
            at,
            node_id: node.id,
            job_id: job,
            slice_id: slice,
            command: cmd.name(),
            arguments: cmd.describe(),
            code,
            returned,
            duration_ms: started.elapsed().as_millis() as i64,
        };
        (result, sent)
    }
}

/// Why an archive could not be read from its node to the end.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The node answered with a refusal (a newer export replaced it, or it is gone).
    #[error("{0}")]
    Refused(String),
    /// The link broke and did not come back in time.
    #[error("the node did not answer: {0}")]
    Link(#[from] LinkError),
    /// What arrived does not hash to what the node said it made.
    #[error("the archive that arrived is not the one the node made (SHA-256 {got}, not {want})")]
    Corrupt { got: String, want: String },
    /// The receiving end went away (the browser stopped the download).
    #[error("the download was stopped")]
    Stopped,
}

/// How many pieces of an archive are asked for (or sent) before the first answer is waited
/// for: the node reads the next piece while the master takes in the last.
const IN_FLIGHT: usize = 4;

/// Five failures in a row end a transfer; between them, a growing pause.
async fn another_try(failures: &mut u32, e: LinkError) -> Result<(), ArchiveError> {
    *failures += 1;
    if *failures >= 5 {
        return Err(e.into());
    }
    tokio::time::sleep(Duration::from_millis(200 << *failures)).await;
    Ok(())
}

impl Links {
    /// Reads the archive `sha256` of slice `id` from `node` piece by piece into `out`, on a
    /// connection of its own, checking its SHA-256 as it goes; the last piece is held back
    /// until the whole matches, so a receiver never gets a complete-looking wrong file. A few
    /// reads are in flight at once. A broken link is opened again and the reading goes on
    /// where it stopped (five tries in a row at most). At most a few pieces (512 KiB each)
    /// are in memory at a time.
    ///
    /// From an offset other than 0 (a browser resuming a download) the part before it is not
    /// read, so the hash cannot be checked here: the pieces go on as they come, and the
    /// receiver checks the whole against the SHA-256 it was shown.
    pub async fn read_archive(
        &self,
        node: &Node,
        (id, sha256, size): (crate::domain::VeId, &crate::templates::Sha256Hex, u64),
        from: u64,
        out: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<(), ArchiveError> {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let whole = from == 0;
        let (mut offset, mut held, mut client, mut failures) = (from, None, None, 0u32);
        let mut legacy = false;
        // Asked for and not yet answered: (offset, length), oldest first.
        let mut asked: std::collections::VecDeque<(u64, u32)> = Default::default();
        while offset < size {
            let c = match client.as_mut() {
                Some(c) => c,
                None => match self.connect(node).await {
                    Ok(c) => {
                        asked.clear();
                        client.insert(c)
                    }
                    Err(e) => {
                        another_try(&mut failures, e).await?;
                        continue;
                    }
                },
            };
            let mut next = asked.back().map_or(offset, |(o, l)| o + *l as u64);
            let mut sent = Ok(());
            while asked.len() < IN_FLIGHT && next < size {
                let len = (size - next).min(crate::templates::CHUNK as u64) as u32;
                let cmd = Command::ReadExport {
                    id,
                    sha256: sha256.clone(),
                    offset: next,
                    len,
                    raw: !legacy,
                };
                sent = c.send(&cmd).await;
                if sent.is_err() {
                    break;
                }
                asked.push_back((next, len));
                next += len as u64;
            }
            let reply = match sent {
                Ok(()) => c.receive().await,
                Err(e) => Err(e),
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(node = %node.name, offset, error = %e, "archive read: the link broke; reading on from here");
                    client = None;
                    another_try(&mut failures, e).await?;
                    continue;
                }
            };
            let (at, len) = asked.pop_front().expect("a reply answers a read");
            if !legacy && crate::slave_link::protocol::refuses_raw_reads(&reply) {
                // An agent older than raw pieces: ask again in base64, on a fresh connection.
                tracing::info!(node = %node.name, "archive read: the agent answers no raw pieces; reading base64");
                legacy = true;
                client = None;
                continue;
            }
            if !reply.is_ok() {
                return Err(ArchiveError::Refused(reply.text()));
            }
            let data = match reply.raw {
                Some(raw) => Some(raw),
                None => reply
                    .returned
                    .first()
                    .and_then(|v| v.as_str())
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()),
            };
            let data = data
                .filter(|d| at == offset && d.len() == len as usize)
                .ok_or_else(|| {
                    ArchiveError::Refused(format!(
                        "read_export answered no whole piece at offset {offset} of {size}"
                    ))
                })?;
            failures = 0;
            offset += data.len() as u64;
            if !whole {
                out.send(bytes::Bytes::from(data))
                    .await
                    .map_err(|_| ArchiveError::Stopped)?;
                continue;
            }
            hash.update(&data);
            if let Some(previous) = held.replace(bytes::Bytes::from(data)) {
                out.send(previous)
                    .await
                    .map_err(|_| ArchiveError::Stopped)?;
            }
        }
        if !whole {
            return Ok(());
        }
        let got = crate::templates::Sha256Hex::of(&hash.finalize());
        if &got != sha256 {
            return Err(ArchiveError::Corrupt {
                got: got.to_string(),
                want: sha256.to_string(),
            });
        }
        if let Some(last) = held {
            out.send(last).await.map_err(|_| ArchiveError::Stopped)?;
        }
        Ok(())
    }

    /// Sends an archive for slice `id`'s /home to `node` (`import_home`), its pieces taken
    /// from `pieces` in order (at most 512 KiB each), a few in flight at once; the node checks
    /// the SHA-256 after the last and unpacks it. A broken link is opened again and the
    /// sending goes on from where the node says it is (the pieces not yet acknowledged are
    /// kept for that). The answer to the last piece is the node's.
    pub async fn write_archive(
        &self,
        node: &Node,
        (id, sha256, size): (crate::domain::VeId, &crate::templates::Sha256Hex, u64),
        mut pieces: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> Result<(), ArchiveError> {
        let (mut client, mut failures) = (None, 0u32);
        // Sent (or to send) and not yet acknowledged: (offset, piece), oldest first; `sent`
        // of them are on the current connection.
        let mut unacked: std::collections::VecDeque<(u64, bytes::Bytes)> = Default::default();
        let (mut sent, mut taken, mut acked) = (0usize, 0u64, 0u64);
        let mut legacy = false;
        while acked < size {
            let c = match client.as_mut() {
                Some(c) => c,
                None => match self.connect(node).await {
                    Ok(c) => {
                        sent = 0;
                        client.insert(c)
                    }
                    Err(e) => {
                        another_try(&mut failures, e).await?;
                        continue;
                    }
                },
            };
            while unacked.len() < IN_FLIGHT && taken < size {
                let Some(p) = pieces.recv().await else {
                    return Err(ArchiveError::Stopped);
                };
                unacked.push_back((taken, p.clone()));
                taken += p.len() as u64;
            }
            let mut result = Ok(());
            while sent < unacked.len() {
                let (at, data) = &unacked[sent];
                let cmd = Command::ImportHome {
                    id,
                    sha256: sha256.clone(),
                    size,
                    offset: *at,
                    data: data.to_vec(),
                };
                // An agent older than raw pieces takes them in base64 (the JSON form).
                result = if legacy {
                    c.send_json(&cmd).await
                } else {
                    c.send(&cmd).await
                };
                if result.is_err() {
                    break;
                }
                sent += 1;
            }
            let reply = match result {
                Ok(()) => c.receive().await,
                Err(e) => Err(e),
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(node = %node.name, acked, error = %e, "archive write: the link broke; sending on from where the node is");
                    client = None;
                    another_try(&mut failures, e).await?;
                    continue;
                }
            };
            let (at, data) = unacked.pop_front().expect("a reply answers a piece");
            sent -= 1;
            if reply.code == crate::slave_link::code::CONFLICT && reply.returned.len() == 2 {
                // Not where the node is (a piece written whose answer was lost): go on from
                // there, on a fresh connection (the pieces after this one were refused too).
                let have = reply.returned[1].as_u64().unwrap_or(0);
                unacked.push_front((at, data));
                while unacked
                    .front()
                    .is_some_and(|(o, d)| o + d.len() as u64 <= have)
                {
                    unacked.pop_front();
                }
                if have < at || unacked.front().is_some_and(|(o, _)| *o != have) {
                    return Err(ArchiveError::Refused(reply.text()));
                }
                acked = have;
                client = None;
                continue;
            }
            if !legacy && crate::slave_link::refuses_raw_pieces(&reply) {
                // An older agent: everything sent since is refused too; again in base64, on
                // a fresh connection.
                tracing::info!(node = %node.name, "archive write: the agent takes no raw pieces; sending base64");
                legacy = true;
                unacked.push_front((at, data));
                client = None;
                continue;
            }
            if !reply.is_ok() {
                return Err(ArchiveError::Refused(reply.text()));
            }
            failures = 0;
            acked = at + data.len() as u64;
        }
        Ok(())
    }

    /// Carries archive `sha256` of slice `from.1` on node `from.0` into slice `to.1` on node
    /// `to.0` (`read_archive` piped into `write_archive`): checked as it is read and again by
    /// the receiving node before it unpacks. A few pieces in memory at a time.
    pub async fn copy_archive(
        &self,
        from: (&Node, crate::domain::VeId),
        to: (&Node, crate::domain::VeId),
        (sha256, size): (&crate::templates::Sha256Hex, u64),
    ) -> Result<(), ArchiveError> {
        let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let read = self.read_archive(from.0, (from.1, sha256, size), 0, tx);
        let write = self.write_archive(to.0, (to.1, sha256, size), rx);
        let (read, write) = tokio::join!(read, write);
        // The reader's error says why when the writer only saw its end.
        match (read, write) {
            (Err(e), Err(ArchiveError::Stopped)) | (Err(e), Ok(())) => Err(e),
            (_, w) => w,
        }
    }
}
