//! The `nodes` table: the slave hosts the master knows, their flags and what they last said.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::{FieldError, NodeAddress, NodeName};
use crate::error::{Error, Result};
use crate::store::now;

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
    /// The slice subnet the master gave it (None: enrolled before the master owned them;
    /// `info` then says what the agent uses).
    pub subnet: Option<String>,
    /// The SHA-256 of the certificate the node was enrolled with (or first seen with): the
    /// master talks only to an agent presenting it.
    #[serde(skip)]
    pub cert_sha256: Option<String>,
}

impl Node {
    /// Whether its agent said it runs the simulator (no real machines behind its slices).
    pub fn simulated(&self) -> bool {
        self.info
            .as_ref()
            .and_then(|i| i.get("simulated"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

const COLUMNS: &str =
    "id, name, address, enabled, draining, created_at, last_seen_at, last_error, info, subnet, cert_sha256";

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
        subnet: r.get(9)?,
        cert_sha256: r.get(10)?,
    })
}

pub fn add(conn: &Connection, name: &NodeName, address: &NodeAddress) -> Result<Node> {
    if by_name(conn, name.as_str())?.is_some() {
        return Err(FieldError::new("name", format!("A node named {name} exists already.")).into());
    }
    conn.prepare_cached("INSERT INTO nodes (name, address, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![name.as_str(), address.as_str(), now()])?;
    by_name(conn, name.as_str())?.ok_or(Error::NotFound("node"))
}

/// Moves a node to a new address (the embedded agent listens on a new port at each start).
pub fn set_address(conn: &Connection, name: &NodeName, address: &NodeAddress) -> Result<()> {
    conn.prepare_cached("UPDATE nodes SET address = ?2 WHERE name = ?1")?
        .execute(params![name.as_str(), address.as_str()])?;
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

/// A node's name and whether it runs the simulator, as a card shows them (without reading
/// and parsing the rest of the node).
pub fn name_and_simulated(conn: &Connection, id: i64) -> Result<Option<(String, bool)>> {
    Ok(conn
        .prepare_cached(
            "SELECT name, coalesce(CASE WHEN json_valid(info)
                                        THEN json_extract(info, '$.simulated') = 1 END, 0)
               FROM nodes WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
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
        Ok(info) => conn
            .prepare_cached(
                "UPDATE nodes SET last_seen_at = ?2, last_error = NULL, info = ?3 WHERE name = ?1",
            )?
            .execute(params![name, now(), info.to_string()])?,
        Err(e) => conn
            .prepare_cached("UPDATE nodes SET last_error = ?2 WHERE name = ?1")?
            .execute(params![name, e])?,
    };
    Ok(())
}

/// Whether the node may answer: false when its last health check failed and the next ones
/// will tell (it is enabled); a disabled node has no health checks, and so no such knowledge.
pub fn answers(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT last_error IS NULL OR NOT enabled FROM nodes WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .unwrap_or(true))
}

/// Records the subnet the master gave a node.
pub fn set_subnet(conn: &Connection, id: i64, subnet: &crate::domain::Subnet) -> Result<()> {
    conn.prepare_cached("UPDATE nodes SET subnet = ?2 WHERE id = ?1")?
        .execute(params![
            id,
            format!("{}/{}", subnet.network(), subnet.prefix())
        ])?;
    Ok(())
}

/// Removes a node's row, its jobs and its command log; slices that were on it keep their
/// history with no node.
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET node_id = NULL WHERE node_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("UPDATE slices SET wanted_node = NULL WHERE wanted_node = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM agent_log WHERE node_id = ?1")?
        .execute([id])?;
    conn.prepare_cached(
        "DELETE FROM agent_log WHERE job_id IN (SELECT id FROM jobs WHERE node_id = ?1)",
    )?
    .execute([id])?;
    conn.prepare_cached("DELETE FROM jobs WHERE node_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Pins the certificate a node's agent must present.
pub fn set_cert(conn: &Connection, id: i64, sha256: &str) -> Result<()> {
    conn.prepare_cached("UPDATE nodes SET cert_sha256 = ?2 WHERE id = ?1")?
        .execute(params![id, sha256])?;
    Ok(())
}
