//! Server-side sessions behind a random cookie. The database holds only the token's hash.

use rusqlite::{params, Connection, OptionalExtension};

use super::users::{from_row, User, COLUMNS, COLUMN_COUNT};
use crate::domain::token::{looks_like_token, new_token, token_hash};
use crate::error::Result;
use crate::store::now;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub absolute_secs: i64,
    pub idle_secs: i64,
}

/// A live session and its account.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub user: User,
    pub last_seen_at: i64,
}

/// Starts a session; returns the cookie value.
pub fn create(
    conn: &Connection,
    user_id: i64,
    life: Lifetimes,
    ip: &str,
    user_agent: &str,
) -> Result<String> {
    let token = new_token();
    let t = now();
    let ua: String = user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at, ip, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6)",
    )?
    .execute(params![token_hash(&token), user_id, t, t + life.absolute_secs, ip, ua])?;
    Ok(token)
}

/// The session for a cookie value, if it is live and its account is enabled.
pub fn lookup(conn: &Connection, token: &str, life: Lifetimes) -> Result<Option<Session>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let t = now();
    // Written once: every request with a session runs it.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let cols: String = COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {cols}, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?3"
        )
    });
    let hash = token_hash(token);
    let found = conn
        .prepare_cached(&SQL)?
        .query_row(params![hash, t, t - life.idle_secs], |r| {
            Ok((from_row(r)?, r.get::<_, i64>(COLUMN_COUNT)?))
        })
        .optional()?;
    Ok(match found {
        Some((user, last_seen_at)) if !user.is_disabled() => Some(Session {
            token_hash: hash,
            user,
            last_seen_at,
        }),
        _ => None,
    })
}

/// Notes activity (at most once a minute per session, to keep writes rare).
pub fn touch(conn: &Connection, token_hash: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND last_seen_at < ?2 - 60",
    )?
    .execute(params![token_hash, now()])?;
    Ok(())
}

pub fn delete(conn: &Connection, token_hash: &[u8]) -> Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
        .execute([token_hash])?;
    Ok(())
}

/// Ends every session of an account; returns how many.
pub fn delete_all_for(conn: &Connection, user_id: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([user_id])?)
}

/// Removes sessions that can no longer be used.
pub fn purge_expired(conn: &Connection, life: Lifetimes) -> Result<usize> {
    let t = now();
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2")?
        .execute(params![t, t - life.idle_secs])?)
}

pub fn count_for(conn: &Connection, user_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM sessions WHERE user_id = ?1 AND expires_at > ?2")?
        .query_row(params![user_id, now()], |r| r.get(0))?)
}

/// Ends every session of the user but the one with this token hash.
pub fn end_others(conn: &Connection, user_id: i64, keep_token_hash: &[u8]) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2")?
        .execute(params![user_id, keep_token_hash])?)
}

/// How long a single sign-on log-in may take, from leaving for the provider to coming back.
pub const SSO_STATE_SECS: i64 = 600;

/// Takes a single sign-on state (by its hash) as used: false when it was used before. States
/// older than [`SSO_STATE_SECS`] are swept first (their log-ins are refused as too old anyway).
pub fn take_sso_state(conn: &Connection, state_hash: &[u8]) -> Result<bool> {
    let t = now();
    conn.prepare_cached("DELETE FROM sso_states_used WHERE used_at < ?1")?
        .execute([t - SSO_STATE_SECS])?;
    let added = conn
        .prepare_cached(
            "INSERT INTO sso_states_used (state_hash, used_at) VALUES (?1, ?2)
             ON CONFLICT (state_hash) DO NOTHING",
        )?
        .execute(rusqlite::params![state_hash, t])?;
    Ok(added == 1)
}
