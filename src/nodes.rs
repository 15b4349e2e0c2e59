//! Slave hosts as the master knows them (the `nodes` table), and how to reach their agents.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::{FieldError, NodeAddress, NodeName};
use crate::error::{Error, Result};
use crate::slave_link::{pki::Ca, AgentClient, LinkError};
use crate::store::now;
use crate::templates::TemplateDir;

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub enabled: bool,
    pub draining: bool,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub last_error: Option<String>,
    pub info: Option<serde_json::Value>,
}

const COLUMNS: &str =
    "id, name, address, enabled, draining, created_at, last_seen_at, last_error, info";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    let info: Option<String> = r.get(8)?;
    Ok(Node {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        enabled: r.get(3)?,
        draining: r.get(4)?,
        created_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        last_error: r.get(7)?,
        info: info.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

pub fn add(conn: &Connection, name: &NodeName, address: &NodeAddress) -> Result<Node> {
    if by_name(conn, name.as_str())?.is_some() {
        return Err(FieldError::new("name", format!("A node named {name} exists already.")).into());
    }
    conn.execute(
        "INSERT INTO nodes (name, address, created_at) VALUES (?1, ?2, ?3)",
        params![name.as_str(), address.as_str(), now()],
    )?;
    by_name(conn, name.as_str())?.ok_or(Error::NotFound("node"))
}

/// Moves a node to a new address (the embedded agent listens on a new port at each start).
pub fn set_address(conn: &Connection, name: &NodeName, address: &NodeAddress) -> Result<()> {
    conn.execute(
        "UPDATE nodes SET address = ?2 WHERE name = ?1",
        params![name.as_str(), address.as_str()],
    )?;
    Ok(())
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<Node>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE name = ?1"))?
        .query_row([name], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Node>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Node>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM nodes ORDER BY name"))?;
    let rows = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Sets `enabled` or `draining`; false when there is no such node.
pub fn set_flag(conn: &Connection, name: &str, column: &str, value: i64) -> Result<bool> {
    let sql = match column {
        "enabled" => "UPDATE nodes SET enabled = ?2 WHERE name = ?1",
        "draining" => "UPDATE nodes SET draining = ?2 WHERE name = ?1",
        _ => return Err(Error::NotFound("setting")),
    };
    Ok(conn.execute(sql, params![name, value])? == 1)
}

/// Records what a node said (or that it did not answer).
pub fn record_contact(
    conn: &Connection,
    name: &str,
    outcome: std::result::Result<&serde_json::Value, &str>,
) -> Result<()> {
    match outcome {
        Ok(info) => conn.execute(
            "UPDATE nodes SET last_seen_at = ?2, last_error = NULL, info = ?3 WHERE name = ?1",
            params![name, now(), info.to_string()],
        )?,
        Err(e) => conn.execute(
            "UPDATE nodes SET last_error = ?2 WHERE name = ?1",
            params![name, e],
        )?,
    };
    Ok(())
}

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
    AgentClient::connect(&node.address, &name, tls, timeout).await
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
