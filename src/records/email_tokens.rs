//! Single-use links sent by mail: confirm an address, reset a password. Only the token's
//! hash is stored.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::token::{looks_like_token, new_token, token_hash};
use crate::error::Result;
use crate::store::now;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Verify,
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }

    /// How long a link works.
    pub fn ttl_secs(self) -> i64 {
        match self {
            Purpose::Verify => 3 * 24 * 3600,
            Purpose::Reset => 3600,
        }
    }
}

pub fn create(conn: &Connection, user_id: i64, purpose: Purpose) -> Result<String> {
    let token = new_token();
    let t = now();
    conn.prepare_cached("INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![token_hash(&token), user_id, purpose.as_str(), t, t + purpose.ttl_secs()],
    )?;
    Ok(token)
}

/// The user a live token belongs to (without using it up).
pub fn peek(conn: &Connection, token: &str, purpose: Purpose) -> Result<Option<i64>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached("SELECT user_id FROM email_tokens WHERE token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3")?
            .query_row(params![token_hash(token), purpose.as_str(), now()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Uses a token up; the user it belonged to, or None if it was used, expired or unknown.
pub fn redeem(conn: &Connection, token: &str, purpose: Purpose) -> Result<Option<i64>> {
    let Some(user) = peek(conn, token, purpose)? else {
        return Ok(None);
    };
    conn.prepare_cached("UPDATE email_tokens SET used_at = ?2 WHERE token_hash = ?1")?
        .execute(params![token_hash(token), now()])?;
    Ok(Some(user))
}

/// How many tokens of a kind a user got since `since` (to limit reset mails).
pub fn count_since(conn: &Connection, user_id: i64, purpose: Purpose, since: i64) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM email_tokens WHERE user_id = ?1 AND purpose = ?2 AND created_at >= ?3")?
            .query_row(params![user_id, purpose.as_str(), since],
        |r| r.get(0),
    )?)
}
