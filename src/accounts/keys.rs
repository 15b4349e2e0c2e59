//! Students' own SSH public keys. They go into the gateway account's `authorized_keys`, so
//! each change queues a gateway run for the user.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::audit::{self, Actor, Event};
use crate::domain::{FieldError, SshPublicKey};
use crate::error::{Error, Result};
use crate::store::now;

/// At most this many keys per user.
pub const MAX_KEYS: i64 = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Key {
    pub id: i64,
    pub kind: String,
    pub fingerprint: String,
    pub comment: String,
    pub created_at: i64,
}

pub fn list(conn: &Connection, user_id: i64) -> Result<Vec<Key>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, key, fingerprint, created_at FROM ssh_keys WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .map(|(id, line, fingerprint, created_at)| {
            let key = SshPublicKey::parse(&line).ok();
            Key {
                id,
                kind: key
                    .as_ref()
                    .map(|k| k.kind().to_string())
                    .unwrap_or_default(),
                comment: key.map(|k| k.comment().to_string()).unwrap_or_default(),
                fingerprint,
                created_at,
            }
        })
        .collect())
}

/// Adds a key (checked) for a user; the same key twice is refused with a clear message.
pub fn add(conn: &Connection, user_id: i64, key: &SshPublicKey, actor: &Actor<'_>) -> Result<Key> {
    let fingerprint = key.fingerprint();
    let exists: Option<i64> = conn
        .query_row(
            "SELECT id FROM ssh_keys WHERE user_id = ?1 AND fingerprint = ?2",
            params![user_id, fingerprint],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(FieldError::new(
            "key",
            format!("You have already added this key ({fingerprint})."),
        )
        .into());
    }
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM ssh_keys WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    if count >= MAX_KEYS {
        return Err(FieldError::new(
            "key",
            format!(
                "You have {MAX_KEYS} keys, the most allowed: remove one you no longer use first."
            ),
        )
        .into());
    }
    let t = now();
    conn.execute(
        "INSERT INTO ssh_keys (user_id, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, key.to_string(), fingerprint, t],
    )?;
    let id = conn.last_insert_rowid();
    audit::record(
        conn,
        Event::KeyAdded,
        actor,
        &user_id.to_string(),
        &fingerprint,
    )?;
    crate::gateway::queue_user(conn, user_id)?;
    Ok(Key {
        id,
        kind: key.kind().to_string(),
        fingerprint,
        comment: key.comment().to_string(),
        created_at: t,
    })
}

/// Removes one of the user's keys (another user's key id is "not found").
pub fn remove(conn: &Connection, user_id: i64, key_id: i64, actor: &Actor<'_>) -> Result<String> {
    let fingerprint: String = conn
        .query_row(
            "SELECT fingerprint FROM ssh_keys WHERE id = ?1 AND user_id = ?2",
            params![key_id, user_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or(Error::NotFound("key"))?;
    conn.execute("DELETE FROM ssh_keys WHERE id = ?1", [key_id])?;
    audit::record(
        conn,
        Event::KeyRemoved,
        actor,
        &user_id.to_string(),
        &fingerprint,
    )?;
    crate::gateway::queue_user(conn, user_id)?;
    Ok(fingerprint)
}
