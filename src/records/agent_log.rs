//! The `agent_log` table: every command the master sent an agent, its arguments, code,
//! answer and duration.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::Result;

/// One command as sent, with its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When it was sent.
    pub at: i64,
    pub node_id: i64,
    pub job_id: Option<i64>,
    pub slice_id: Option<i64>,
    pub command: &'static str,
    pub arguments: String,
    pub code: Option<i64>,
    pub returned: String,
    pub duration_ms: i64,
}

pub fn insert(conn: &Connection, s: &Sent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO agent_log (at, node_id, job_id, slice_id, command, arguments, code, returned, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        s.at,
        s.node_id,
        s.job_id,
        s.slice_id,
        s.command,
        s.arguments,
        s.code,
        s.returned,
        s.duration_ms
    ])?;
    Ok(())
}

/// The agent commands a job or slice sent.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub at: i64,
    pub node: Option<String>,
    pub job_id: Option<i64>,
    pub command: String,
    pub arguments: String,
    pub code: Option<i64>,
    pub returned: String,
    pub duration_ms: i64,
}

pub fn command_log(
    conn: &Connection,
    job_id: Option<i64>,
    slice_id: Option<i64>,
    limit: u32,
) -> Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.at, n.name, l.job_id, l.command, l.arguments, l.code, l.returned, l.duration_ms
         FROM agent_log l LEFT JOIN nodes n ON n.id = l.node_id
         WHERE (?1 IS NULL OR l.job_id = ?1) AND (?2 IS NULL OR l.slice_id = ?2)
         ORDER BY l.id DESC LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![job_id, slice_id, limit], |r| {
            Ok(LogEntry {
                at: r.get(0)?,
                node: r.get(1)?,
                job_id: r.get(2)?,
                command: r.get(3)?,
                arguments: r.get(4)?,
                code: r.get(5)?,
                returned: r.get(6)?,
                duration_ms: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
