//! Students' own SSH public keys. They go into the gateway account's `authorized_keys`, so
//! each change queues a gateway run for the user.

use rusqlite::Connection;
use serde::Serialize;

use super::audit::{self, Actor, Event};
use crate::domain::{FieldError, SshPublicKey};
use crate::error::{Error, Result};
use crate::records::ssh_keys;

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
    Ok(ssh_keys::rows(conn, user_id)?
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
    if ssh_keys::find(conn, user_id, &fingerprint)?.is_some() {
        return Err(FieldError::new(
            "key",
            format!("You have already added this key ({fingerprint})."),
        )
        .into());
    }
    if ssh_keys::count(conn, user_id)? >= MAX_KEYS {
        return Err(FieldError::new(
            "key",
            format!(
                "You have {MAX_KEYS} keys, the most allowed: remove one you no longer use first."
            ),
        )
        .into());
    }
    let (id, t) = ssh_keys::insert(conn, user_id, &key.to_string(), &fingerprint)?;
    audit::record(
        conn,
        Event::KeyAdded,
        actor,
        crate::records::audit::Subject::Account(&username_of(conn, user_id)?),
        &fingerprint,
    )?;
    crate::records::jobs::enqueue_gateway(conn, Some(user_id))?;
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
    let fingerprint = ssh_keys::delete(conn, user_id, key_id)?.ok_or(Error::NotFound("key"))?;
    audit::record(
        conn,
        Event::KeyRemoved,
        actor,
        crate::records::audit::Subject::Account(&username_of(conn, user_id)?),
        &fingerprint,
    )?;
    crate::records::jobs::enqueue_gateway(conn, Some(user_id))?;
    Ok(fingerprint)
}

fn username_of(conn: &Connection, user_id: i64) -> Result<String> {
    Ok(crate::ops::accounts::users::by_id(conn, user_id)?
        .ok_or(Error::NotFound("user"))?
        .username)
}
