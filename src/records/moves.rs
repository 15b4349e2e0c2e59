//! The `moves` table: a slice being made anew (moved to another node, or reinstalled from a
//! template) while its old container stays as it was, until the new one runs.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;

/// A move under way.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Move {
    pub slice_id: i64,
    /// `move` or `reinstall`.
    pub kind: String,
    /// The place it was in when asked (none for a slice that never got one).
    pub from_node: Option<i64>,
    pub from_veid: Option<i64>,
    pub from_ip: Option<String>,
    /// The node asked for (None: wherever there is room, not the one it leaves).
    pub wanted: Option<i64>,
    /// The new place, once given.
    pub to_node: Option<i64>,
    pub to_veid: Option<i64>,
    pub to_ip: Option<String>,
    pub template: String,
    /// What the slice goes back to: `running`, `stopped` or `failed`.
    pub was: String,
    pub keep_home: bool,
    /// The archive of the old /home, once packed.
    pub sha256: Option<String>,
    pub size: Option<i64>,
    /// The slice holds the new place; the old container is left to remove.
    pub switched: bool,
    pub asked_by: Option<i64>,
    pub asked_at: i64,
}

const SELECT: &str =
    "SELECT slice_id, kind, from_node, from_veid, from_ip, wanted, to_node, to_veid,
        to_ip, template, was, keep_home, sha256, size, switched, asked_by, asked_at FROM moves";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Move> {
    Ok(Move {
        slice_id: r.get(0)?,
        kind: r.get(1)?,
        from_node: r.get(2)?,
        from_veid: r.get(3)?,
        from_ip: r.get(4)?,
        wanted: r.get(5)?,
        to_node: r.get(6)?,
        to_veid: r.get(7)?,
        to_ip: r.get(8)?,
        template: r.get(9)?,
        was: r.get(10)?,
        keep_home: r.get(11)?,
        sha256: r.get(12)?,
        size: r.get(13)?,
        switched: r.get(14)?,
        asked_by: r.get(15)?,
        asked_at: r.get(16)?,
    })
}

pub fn get(conn: &Connection, slice_id: i64) -> Result<Option<Move>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE slice_id = ?1"))?
        .query_row([slice_id], from_row)
        .optional()?)
}

/// A move is asked for (fields as in `Move`; the new place, archive and switch come later).
pub fn insert(conn: &Connection, m: &Move) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO moves (slice_id, kind, from_node, from_veid, from_ip, wanted, template, was,
                            keep_home, asked_by, asked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.slice_id,
        m.kind,
        m.from_node,
        m.from_veid,
        m.from_ip,
        m.wanted,
        m.template,
        m.was,
        m.keep_home,
        m.asked_by,
        m.asked_at
    ])?;
    Ok(())
}

/// The new place is given.
pub fn set_place(
    conn: &Connection,
    slice_id: i64,
    node_id: i64,
    veid: i64,
    ip: &str,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE moves SET to_node = ?2, to_veid = ?3, to_ip = ?4 WHERE slice_id = ?1 AND to_node IS NULL",
    )?
    .execute(params![slice_id, node_id, veid, ip])?;
    Ok(())
}

/// The old /home is packed.
pub fn set_archive(conn: &Connection, slice_id: i64, sha256: &str, size: i64) -> Result<()> {
    conn.prepare_cached("UPDATE moves SET sha256 = ?2, size = ?3 WHERE slice_id = ?1")?
        .execute(params![slice_id, sha256, size])?;
    Ok(())
}

/// The slice holds the new place now.
pub fn set_switched(conn: &Connection, slice_id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE moves SET switched = 1 WHERE slice_id = ?1")?
        .execute([slice_id])?;
    Ok(())
}

pub fn remove(conn: &Connection, slice_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM moves WHERE slice_id = ?1")?
        .execute([slice_id])?;
    Ok(())
}

/// The container ids a move holds on a node (the old one and the new one): not orphans, not
/// free for another slice.
pub fn veids_on(conn: &Connection, node_id: i64) -> Result<Vec<i64>> {
    let ids = conn
        .prepare_cached(
            "SELECT from_veid FROM moves WHERE from_node = ?1 AND from_veid IS NOT NULL
             UNION SELECT to_veid FROM moves WHERE to_node = ?1 AND to_veid IS NOT NULL",
        )?
        .query_map([node_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}
