//! The `ssh_keys` table: students' own SSH public keys.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;
use crate::store::now;

/// (id, key line, fingerprint, created at) of a user's keys, oldest first.
pub fn rows(conn: &Connection, user_id: i64) -> Result<Vec<(i64, String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, key, fingerprint, created_at FROM ssh_keys WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The id of the user's key with this fingerprint.
pub fn find(conn: &Connection, user_id: i64, fingerprint: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM ssh_keys WHERE user_id = ?1 AND fingerprint = ?2")?
        .query_row(params![user_id, fingerprint], |r| r.get(0))
        .optional()?)
}

pub fn count(conn: &Connection, user_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM ssh_keys WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?)
}

/// Stores a key line; its id and the time.
pub fn insert(
    conn: &Connection,
    user_id: i64,
    line: &str,
    fingerprint: &str,
) -> Result<(i64, i64)> {
    let t = now();
    conn.prepare_cached(
        "INSERT INTO ssh_keys (user_id, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, line, fingerprint, t])?;
    Ok((conn.last_insert_rowid(), t))
}

/// Deletes one of the user's keys; its fingerprint, or None when the user has no such key.
pub fn delete(conn: &Connection, user_id: i64, key_id: i64) -> Result<Option<String>> {
    let fingerprint: Option<String> = conn
        .prepare_cached("SELECT fingerprint FROM ssh_keys WHERE id = ?1 AND user_id = ?2")?
        .query_row(params![key_id, user_id], |r| r.get(0))
        .optional()?;
    if fingerprint.is_some() {
        conn.prepare_cached("DELETE FROM ssh_keys WHERE id = ?1")?
            .execute([key_id])?;
    }
    Ok(fingerprint)
}
