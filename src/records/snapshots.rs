//! The `snapshots` table: each slice's snapshots, as asked for and as its node has them.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;

/// The states a snapshot row can be in.
pub const STATES: [&str; 5] = ["taking", "ready", "restoring", "deleting", "failed"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub slice_id: i64,
    pub name: String,
    pub note: String,
    pub state: String,
    /// Bytes it holds on the node's disk, as the node says.
    pub size: Option<i64>,
    /// When the node took it.
    pub taken_at: Option<i64>,
    pub asked_by: Option<i64>,
    pub asked_at: i64,
    pub error: String,
}

const SELECT: &str = "SELECT slice_id, name, note, state, size, taken_at, asked_by, asked_at, error
       FROM snapshots";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        slice_id: r.get(0)?,
        name: r.get(1)?,
        note: r.get(2)?,
        state: r.get(3)?,
        size: r.get(4)?,
        taken_at: r.get(5)?,
        asked_by: r.get(6)?,
        asked_at: r.get(7)?,
        error: r.get(8)?,
    })
}

/// A slice's snapshots, oldest first.
pub fn of_slice(conn: &Connection, slice_id: i64) -> Result<Vec<Snapshot>> {
    let rows = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE slice_id = ?1 ORDER BY coalesce(taken_at, asked_at), name"
        ))?
        .query_map([slice_id], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, slice_id: i64, name: &str) -> Result<Option<Snapshot>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE slice_id = ?1 AND name = ?2"))?
        .query_row(params![slice_id, name], from_row)
        .optional()?)
}

/// A snapshot is asked for (`taking`), or found on the node (`ready`).
pub fn insert(conn: &Connection, s: &Snapshot) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO snapshots (slice_id, name, note, state, size, taken_at, asked_by, asked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        s.slice_id, s.name, s.note, s.state, s.size, s.taken_at, s.asked_by, s.asked_at
    ])?;
    Ok(())
}

pub fn set_state(
    conn: &Connection,
    slice_id: i64,
    name: &str,
    state: &str,
    error: &str,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE snapshots SET state = ?3, error = ?4 WHERE slice_id = ?1 AND name = ?2",
    )?
    .execute(params![slice_id, name, state, error])?;
    Ok(())
}

/// What the node says of a snapshot it has: its size and when it was taken (`ready`, unless
/// something is asked of it).
pub fn seen(conn: &Connection, slice_id: i64, name: &str, size: i64, taken_at: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE snapshots SET size = ?3, taken_at = ?4, error = '',
                state = CASE WHEN state IN ('taking', 'failed') THEN 'ready' ELSE state END
         WHERE slice_id = ?1 AND name = ?2",
    )?
    .execute(params![slice_id, name, size, taken_at])?;
    Ok(())
}

pub fn remove(conn: &Connection, slice_id: i64, name: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM snapshots WHERE slice_id = ?1 AND name = ?2")?
        .execute(params![slice_id, name])?;
    Ok(())
}

/// All of a slice's snapshots go (with its container).
pub fn forget(conn: &Connection, slice_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM snapshots WHERE slice_id = ?1")?
        .execute([slice_id])?;
    Ok(())
}

/// How many a slice keeps or is taking (the plan's count bounds this).
pub fn kept(conn: &Connection, slice_id: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM snapshots WHERE slice_id = ?1 AND state <> 'failed'")?
        .query_row([slice_id], |r| r.get(0))?)
}
