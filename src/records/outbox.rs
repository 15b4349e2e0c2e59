//! The `outbox` table (every message, written in the transaction of the event that causes
//! it, then delivered) and `digests` (which staff member had which day's digest).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::store::now;

/// The states a message can be in.
pub const STATES: [&str; 4] = ["queued", "sending", "sent", "failed"];

/// One message in the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub kind: String,
    pub to_addr: String,
    pub to_name: String,
    pub data: Value,
    pub state: String,
    pub attempts: i64,
    pub next_try: i64,
    pub last_error: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub user_id: Option<i64>,
    pub slice_id: Option<i64>,
}

pub(crate) const COLUMNS: &str =
    "id, kind, to_addr, to_name, data, state, attempts, next_try, last_error, created_at, sent_at, user_id, slice_id";

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let data: String = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        kind: r.get(1)?,
        to_addr: r.get(2)?,
        to_name: r.get(3)?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_try: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        sent_at: r.get(10)?,
        user_id: r.get(11)?,
        slice_id: r.get(12)?,
    })
}

/// Writes a message (`kind` is the template's name); its id.
pub fn insert(
    conn: &Connection,
    kind: &str,
    to_addr: &str,
    to_name: &str,
    data: &Value,
    user_id: Option<i64>,
    slice_id: Option<i64>,
) -> Result<i64> {
    let t = now();
    conn.prepare_cached(
        "INSERT INTO outbox (kind, to_addr, to_name, data, state, next_try, created_at, user_id, slice_id)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?6, ?7)",
    )?
    .execute(params![kind, to_addr, to_name, data.to_string(), t, user_id, slice_id])?;
    Ok(conn.last_insert_rowid())
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Message>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// The outbox, failed first, then newest; optionally one state.
pub fn list(
    conn: &Connection,
    state: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Message>, u64)> {
    let total: u64 = conn
        .prepare_cached("SELECT count(*) FROM outbox WHERE (?1 IS NULL OR state = ?1)")?
        .query_row(params![state], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1)
         ORDER BY state = 'failed' DESC, id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt
        .query_map(params![state, limit, offset as i64], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// Staff: try a failed message again.
pub fn retry(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn.prepare_cached("UPDATE outbox SET state = 'queued', attempts = 0, next_try = ?2 WHERE id = ?1 AND state = 'failed'")?
            .execute(params![id, now()],
    )? == 1)
}

/// Takes up to `limit` messages that are due, marking each `sending` (one more attempt).
pub fn claim_due(conn: &Connection, limit: u32) -> Result<Vec<Message>> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM outbox WHERE state = 'queued' AND next_try <= ?1 ORDER BY next_try, id LIMIT ?2",
        )?
        .query_map(params![now(), limit], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for id in ids {
        conn.prepare_cached(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1 WHERE id = ?1",
        )?
        .execute([id])?;
        if let Some(m) = get(conn, id)? {
            out.push(m);
        }
    }
    Ok(out)
}

pub fn mark_sent(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = '' WHERE id = ?1",
    )?
    .execute(params![id, now()])?;
    Ok(())
}

pub fn mark_failed(conn: &Connection, id: i64, error: &str) -> Result<()> {
    conn.prepare_cached("UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1")?
        .execute(params![id, error])?;
    Ok(())
}

/// A passing failure: queued again, to be tried in `wait_secs`.
pub fn mark_retry(conn: &Connection, id: i64, error: &str, wait_secs: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'queued', last_error = ?2, next_try = ?3 WHERE id = ?1",
    )?
    .execute(params![id, error, now() + wait_secs])?;
    Ok(())
}

/// After a crash, messages caught mid-send are queued again.
pub fn requeue_sending(conn: &Connection) -> Result<usize> {
    Ok(conn
        .prepare_cached("UPDATE outbox SET state = 'queued' WHERE state = 'sending'")?
        .execute([])?)
}

/// Enabled staff and admins to mail: all, or (`each_only`) those who want a mail for each
/// new request.
pub fn staff_recipients(conn: &Connection, each_only: bool) -> Result<Vec<i64>> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM users WHERE role IN ('staff', 'admin') AND disabled_at IS NULL
               AND (?1 = 0 OR request_mail = 'each')",
        )?
        .query_map([each_only as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Staff who chose the daily digest and have not had `day`'s.
pub fn due_digest(conn: &Connection, day: &str) -> Result<Vec<i64>> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM users WHERE role IN ('staff', 'admin') AND disabled_at IS NULL AND request_mail = 'daily'
               AND id NOT IN (SELECT user_id FROM digests WHERE day = ?1)",
        )?
        .query_map([day], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

pub fn note_digest(conn: &Connection, user_id: i64, day: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO digests (user_id, day) VALUES (?1, ?2)")?
        .execute(params![user_id, day])?;
    Ok(())
}
