//! The `exports` table: the archive of each slice's /home, as asked for and as packed.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;

/// The states an export row can be in.
pub const STATES: [&str; 3] = ["packing", "ready", "failed"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Export {
    pub slice_id: i64,
    pub node_id: i64,
    pub veid: i64,
    pub state: String,
    pub asked_by: Option<i64>,
    pub asked_at: i64,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub ready_at: Option<i64>,
    pub error: String,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Export> {
    Ok(Export {
        slice_id: r.get(0)?,
        node_id: r.get(1)?,
        veid: r.get(2)?,
        state: r.get(3)?,
        asked_by: r.get(4)?,
        asked_at: r.get(5)?,
        size: r.get(6)?,
        sha256: r.get(7)?,
        ready_at: r.get(8)?,
        error: r.get(9)?,
    })
}

pub fn get(conn: &Connection, slice_id: i64) -> Result<Option<Export>> {
    Ok(conn
        .prepare_cached(
            "SELECT slice_id, node_id, veid, state, asked_by, asked_at, size, sha256, ready_at, error
               FROM exports WHERE slice_id = ?1",
        )?
        .query_row([slice_id], from_row)
        .optional()?)
}

/// A new archive is being packed (replacing the last one's row).
pub fn start(
    conn: &Connection,
    slice_id: i64,
    (node_id, veid): (i64, i64),
    asked_by: i64,
    at: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO exports (slice_id, node_id, veid, state, asked_by, asked_at)
         VALUES (?1, ?2, ?3, 'packing', ?4, ?5)",
    )?
    .execute(params![slice_id, node_id, veid, asked_by, at])?;
    Ok(())
}

pub fn set_ready(conn: &Connection, slice_id: i64, size: i64, sha256: &str, at: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE exports SET state = 'ready', size = ?2, sha256 = ?3, ready_at = ?4, error = ''
          WHERE slice_id = ?1",
    )?
    .execute(params![slice_id, size, sha256, at])?;
    Ok(())
}

pub fn set_failed(conn: &Connection, slice_id: i64, error: &str) -> Result<()> {
    conn.prepare_cached("UPDATE exports SET state = 'failed', error = ?2 WHERE slice_id = ?1")?
        .execute(params![slice_id, error])?;
    Ok(())
}

/// Forgets a slice's archive (its container is gone, or moved: the node no longer has it).
pub fn forget(conn: &Connection, slice_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM exports WHERE slice_id = ?1")?
        .execute([slice_id])?;
    Ok(())
}
