//! The `orphans` table: containers a node holds that no slice does, as the last reconcile of
//! that node found them, and whether staff asked to remove them.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    pub node_id: i64,
    pub node: String,
    pub veid: i64,
    /// What the node said of it when last seen (running, stopped...), its address and name.
    pub state: String,
    pub ip: String,
    pub hostname: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Staff asked to remove it (by whom): a job is on it.
    pub remove_asked_by: Option<String>,
}

/// A container as the node lists it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub veid: i64,
    pub state: String,
    pub ip: String,
    pub hostname: String,
}

const SELECT: &str = "SELECT o.node_id, n.name, o.veid, o.state, o.first_seen, o.last_seen,
            (SELECT username FROM users WHERE users.id = o.remove_asked_by),
            o.ip, o.hostname
       FROM orphans o JOIN nodes n ON n.id = o.node_id";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Orphan> {
    Ok(Orphan {
        node_id: r.get(0)?,
        node: r.get(1)?,
        veid: r.get(2)?,
        state: r.get(3)?,
        first_seen: r.get(4)?,
        last_seen: r.get(5)?,
        remove_asked_by: r.get(6)?,
        ip: r.get(7)?,
        hostname: r.get(8)?,
    })
}

/// Records what a reconcile of the node found no slice holding, and forgets the ones it no
/// longer has. Returns the ids listed for the first time.
pub fn found(conn: &Connection, node_id: i64, seen: &[Seen]) -> Result<Vec<i64>> {
    let t = now();
    let mut new = Vec::new();
    for s in seen {
        let updated = conn
            .prepare_cached(
                "UPDATE orphans SET state = ?3, ip = ?4, hostname = ?5, last_seen = ?6
                 WHERE node_id = ?1 AND veid = ?2",
            )?
            .execute(params![node_id, s.veid, s.state, s.ip, s.hostname, t])?;
        if updated == 0 {
            conn.prepare_cached(
                "INSERT INTO orphans (node_id, veid, state, ip, hostname, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![node_id, s.veid, s.state, s.ip, s.hostname, t])?;
            new.push(s.veid);
        }
    }
    // Gone from the node (removed by hand, or a slice's after all): no longer listed.
    let listed: Vec<i64> = conn
        .prepare_cached("SELECT veid FROM orphans WHERE node_id = ?1")?
        .query_map([node_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for veid in listed
        .iter()
        .filter(|v| !seen.iter().any(|s| s.veid == **v))
    {
        remove(conn, node_id, *veid)?;
    }
    Ok(new)
}

/// Every orphan, by node and id.
pub fn list(conn: &Connection) -> Result<Vec<Orphan>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} ORDER BY n.name, o.veid"))?
        .query_map([], from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, node_id: i64, veid: i64) -> Result<Option<Orphan>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE o.node_id = ?1 AND o.veid = ?2"))?
        .query_row(params![node_id, veid], from_row)
        .optional()?)
}

/// Staff ask for it to be removed; false if it is not listed.
pub fn ask_removal(conn: &Connection, node_id: i64, veid: i64, by: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE orphans SET remove_asked_by = ?3, remove_asked_at = ?4
             WHERE node_id = ?1 AND veid = ?2",
        )?
        .execute(params![node_id, veid, by, now()])?
        == 1)
}

/// The ids on the node staff asked to remove.
pub fn asked(conn: &Connection, node_id: i64) -> Result<Vec<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT veid FROM orphans WHERE node_id = ?1 AND remove_asked_at IS NOT NULL ORDER BY veid",
        )?
        .query_map([node_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// It is gone from the node: no longer listed.
pub fn remove(conn: &Connection, node_id: i64, veid: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM orphans WHERE node_id = ?1 AND veid = ?2")?
        .execute(params![node_id, veid])?;
    Ok(())
}
