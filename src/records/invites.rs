//! One-time links that let someone create an account with a given role (the first admin).

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::token::{looks_like_token, new_token, token_hash};
use crate::domain::Role;
use crate::error::Result;
use crate::store::now;

/// Makes a link token valid for `ttl_secs`.
pub fn create(conn: &Connection, role: Role, ttl_secs: i64, note: &str) -> Result<String> {
    let token = new_token();
    let t = now();
    conn.prepare_cached("INSERT INTO invites (token_hash, role, created_at, expires_at, note) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![token_hash(&token), role.as_str(), t, t + ttl_secs, note],
    )?;
    Ok(token)
}

/// The role an unused, unexpired invite grants.
pub fn peek(conn: &Connection, token: &str) -> Result<Option<Role>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let role: Option<String> = conn
        .prepare_cached("SELECT role FROM invites WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2")?
            .query_row(params![token_hash(token), now()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(role.and_then(|r| Role::parse(&r).ok()))
}

/// Marks an invite used; false when it was used or expired meanwhile.
pub fn redeem(conn: &Connection, token: &str, user_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE invites SET used_at = ?2, used_by = ?3
         WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        )?
        .execute(params![token_hash(token), now(), user_id])?
        == 1)
}

/// Withdraws every unused invite for a role (a new first-admin link replaces the old one).
pub fn revoke_unused(conn: &Connection, role: Role) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM invites WHERE role = ?1 AND used_at IS NULL")?
        .execute([role.as_str()])?)
}
