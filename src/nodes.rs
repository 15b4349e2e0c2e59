//! Slave hosts as the master knows them (rows in `records::nodes`), and how to reach their
//! agents.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::NodeName;
use crate::slave_link::{pki::Ca, AgentClient, LinkError};
use crate::templates::TemplateDir;

pub use crate::records::nodes::*;

/// Opens a link to a node's agent with the master's certificate.
pub async fn connect(
    ca: &Ca,
    node: &Node,
    timeout: Duration,
) -> std::result::Result<AgentClient, LinkError> {
    let tls: Arc<rustls::ClientConfig> = ca.client_config().map_err(|e| LinkError::Tls {
        node: node.name.clone(),
        message: e.to_string(),
    })?;
    let name = NodeName::parse(&node.name).map_err(|e| LinkError::Tls {
        node: node.name.clone(),
        message: e.message,
    })?;
    AgentClient::connect(&node.address, &name, tls, timeout)
        .await?
        .check_pin(&node.name, node.cert_sha256.as_deref())
}

/// What became of one template on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub name: String,
    /// `current` (nothing to do) or `installed` (sent and checked).
    pub outcome: &'static str,
    pub bytes_sent: u64,
}

/// Brings a node's templates in step with the master's folder: asks which it lacks or has
/// another version of, sends those in pieces (resuming where the node says), and the node
/// installs each after checking its hash.
pub async fn sync_templates(
    link: &mut AgentClient,
    dir: Arc<TemplateDir>,
) -> std::result::Result<Vec<Synced>, String> {
    use crate::slave_link::Command;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let d = dir.clone();
    let manifest = tokio::task::spawn_blocking(move || d.list())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the template folder: {e}"))?;
    let reply = link
        .call(&Command::SyncTemplates(manifest.clone()))
        .await
        .map_err(|e| e.to_string())?;
    if !reply.is_ok() {
        return Err(reply.text());
    }
    let mut out = Vec::new();
    for (info, state) in manifest.iter().zip(reply.returned.iter()) {
        if state["state"] == "current" {
            out.push(Synced {
                name: info.name.to_string(),
                outcome: "current",
                bytes_sent: 0,
            });
            continue;
        }
        let mut file = tokio::fs::File::open(dir.path(&info.name))
            .await
            .map_err(|e| e.to_string())?;
        let mut offset = 0u64;
        let mut sent = 0u64;
        let mut buf = vec![0u8; crate::templates::CHUNK];
        loop {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| e.to_string())?;
            let mut n = 0;
            while n < buf.len() {
                let got = file.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            let r = link
                .call(&Command::PutTemplate {
                    info: info.clone(),
                    offset,
                    data: buf[..n].to_vec(),
                })
                .await
                .map_err(|e| e.to_string())?;
            sent += n as u64;
            match (r.code, r.returned.first().and_then(|v| v.as_str())) {
                (0, Some("installed")) => break,
                (0, Some("partial")) => offset += n as u64,
                (crate::slave_link::code::CONFLICT, _) => {
                    offset = r
                        .returned
                        .get(1)
                        .and_then(|v| v.as_u64())
                        .ok_or_else(|| r.text())?;
                }
                _ => return Err(r.text()),
            }
            if n == 0 {
                return Err(format!(
                    "{}: the file ended before the node had it all",
                    info.name
                ));
            }
        }
        out.push(Synced {
            name: info.name.to_string(),
            outcome: "installed",
            bytes_sent: sent,
        });
    }
    Ok(out)
}
