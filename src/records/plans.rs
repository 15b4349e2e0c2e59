//! The `plans` table: what a slice may use (memory, processes, disk, CPU), one of them the
//! default a request starts with.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::Limits;
use crate::error::Result;

/// The limits of a plan.
pub fn plan_limits(conn: &Connection, plan_id: i64) -> Result<Limits> {
    let l = conn.prepare_cached("SELECT memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares FROM plans WHERE id = ?1")?
            .query_row([plan_id],
        |r| {
            Ok(Limits {
                memory_mb: r.get(0)?,
                memory_limit_mb: r.get(1)?,
                processes: r.get(2)?,
                disk_mb: r.get(3)?,
                cpu_shares: r.get(4)?,
            })
        },
    )?;
    Ok(l.check()?)
}

/// Whether the plan's students are root in their slices (passwordless sudo).
pub fn plan_root(conn: &Connection, plan_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT student_root FROM plans WHERE id = ?1")?
        .query_row([plan_id], |r| r.get(0))?)
}

/// How many snapshots a slice of the plan may keep.
pub fn plan_snapshots(conn: &Connection, plan_id: i64) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT snapshots FROM plans WHERE id = ?1")?
        .query_row([plan_id], |r| r.get(0))?)
}

pub fn default_plan(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT id FROM plans ORDER BY is_default DESC, id LIMIT 1")?
        .query_row([], |r| r.get(0))?)
}

/// A plan students may choose.
#[derive(Debug, Clone, Serialize)]
pub struct PlanChoice {
    pub id: i64,
    pub name: String,
    pub limits: Limits,
    pub is_default: bool,
    /// Students are root in their slices (passwordless sudo).
    pub student_root: bool,
    /// How many snapshots a slice of the plan may keep.
    pub snapshots: u32,
}

pub fn plan_choices(conn: &Connection) -> Result<Vec<PlanChoice>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares, is_default,
                student_root, snapshots
         FROM plans ORDER BY is_default DESC, memory_mb, name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PlanChoice {
                id: r.get(0)?,
                name: r.get(1)?,
                limits: Limits {
                    memory_mb: r.get(2)?,
                    memory_limit_mb: r.get(3)?,
                    processes: r.get(4)?,
                    disk_mb: r.get(5)?,
                    cpu_shares: r.get(6)?,
                },
                is_default: r.get(7)?,
                student_root: r.get(8)?,
                snapshots: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many slices that are not destroyed or denied use the plan.
pub fn live_slices(conn: &Connection, plan_id: i64) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM slices WHERE plan_id = ?1 AND state NOT IN ('destroyed', 'denied')")?
            .query_row([plan_id],
        |r| r.get(0),
    )?)
}

pub fn name_taken(conn: &Connection, name: &str) -> Result<bool> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM plans WHERE name = ?1")?
        .query_row([name], |r| r.get(0))?;
    Ok(n > 0)
}

/// A new plan: its limits, whether students are root, how many snapshots a slice keeps.
pub fn insert(
    conn: &Connection,
    name: &str,
    l: &Limits,
    (student_root, snapshots): (bool, u32),
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO plans (name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares,
                            student_root, snapshots)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        name,
        l.memory_mb,
        l.memory_limit_mb,
        l.processes,
        l.disk_mb,
        l.cpu_shares,
        student_root,
        snapshots
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Makes plan `id` the default; its name, or None when there is no such plan.
pub fn set_default(conn: &Connection, id: i64) -> Result<Option<String>> {
    let name: Option<String> = conn
        .prepare_cached("SELECT name FROM plans WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if name.is_some() {
        conn.prepare_cached("UPDATE plans SET is_default = (id = ?1)")?
            .execute([id])?;
    }
    Ok(name)
}

/// Every plan's name by id.
pub fn names(conn: &Connection) -> Result<std::collections::HashMap<i64, String>> {
    let names = conn
        .prepare_cached("SELECT id, name FROM plans")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

pub fn exists(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT id FROM plans WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some())
}

pub fn name_of(conn: &Connection, id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT name FROM plans WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}
