//! The `users` table.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::domain::{DisplayName, Email, FieldError, Role, Username};
use crate::error::{Error, Result};
use crate::store::now;

/// An account as the rest of the system sees it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub email_verified_at: Option<i64>,
    /// Where its identity comes from (a password here, the directory, single sign-on).
    pub source: AuthSource,
}

/// Where an account's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthSource {
    /// A password kept here.
    Local,
    /// The college directory (LDAP).
    Ldap,
    /// Single sign-on (OpenID Connect).
    Oidc,
}

impl AuthSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthSource::Local => "local",
            AuthSource::Ldap => "ldap",
            AuthSource::Oidc => "oidc",
        }
    }

    fn parse(s: &str) -> Option<AuthSource> {
        match s {
            "local" => Some(AuthSource::Local),
            "ldap" => Some(AuthSource::Ldap),
            "oidc" => Some(AuthSource::Oidc),
            _ => None,
        }
    }
}

impl User {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

pub(crate) const COLUMNS: &str =
    "id, username, email, display_name, role, created_at, last_login_at, \
    disabled_at, disabled_reason, email_verified_at, auth_source";

/// How many columns [`COLUMNS`] has (the next one in a query is at this index).
pub(crate) const COLUMN_COUNT: usize = 11;

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(4)?;
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        display_name: r.get(3)?,
        role: Role::parse(&role).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: r.get(5)?,
        last_login_at: r.get(6)?,
        disabled_at: r.get(7)?,
        disabled_reason: r.get(8)?,
        email_verified_at: r.get(9)?,
        source: {
            let s: String = r.get(10)?;
            AuthSource::parse(&s).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    10,
                    rusqlite::types::Type::Text,
                    format!("auth_source {s}").into(),
                )
            })?
        },
    })
}

/// Inserts an account. A taken username or email is a field error, not a crash.
pub fn insert(
    conn: &Connection,
    username: &Username,
    email: &Email,
    name: &DisplayName,
    password_hash: &str,
    role: Role,
) -> Result<User> {
    if by_username(conn, username.as_str())?.is_some() {
        return Err(FieldError::new(Username::FIELD, "That username is taken.").into());
    }
    if by_email(conn, email.as_str())?.is_some() {
        return Err(FieldError::new(
            Email::FIELD,
            "An account with that email address exists already. Log in, or reset its password.",
        )
        .into());
    }
    let t = now();
    conn.prepare_cached("INSERT INTO users (username, email, display_name, password_hash, role, created_at, password_changed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)")?
            .execute(params![username.as_str(), email.as_str(), name.as_str(), password_hash, role.as_str(), t],
    )?;
    let id = conn.last_insert_rowid();
    by_id(conn, id)?.ok_or(Error::NotFound("user"))
}

/// Makes an account whose identity another system vouches for (`external_id`: the directory
/// entry's DN): no password here, its address taken as confirmed. The same checks as any new
/// account: a username or address already taken is refused, never merged.
pub fn insert_external(
    conn: &Connection,
    source: AuthSource,
    external_id: &str,
    username: &Username,
    email: &Email,
    name: &DisplayName,
    role: Role,
) -> Result<User> {
    let user = insert(conn, username, email, name, "", role)?;
    conn.prepare_cached(
        "UPDATE users SET auth_source = ?2, external_id = ?3, email_verified_at = ?4 WHERE id = ?1",
    )?
    .execute(params![user.id, source.as_str(), external_id, now()])?;
    by_id(conn, user.id)?.ok_or(Error::NotFound("user"))
}

/// Brings an external account's name, address, role and entry up to date with what its
/// source says now.
pub fn update_external(
    conn: &Connection,
    id: i64,
    external_id: &str,
    email: &Email,
    name: &DisplayName,
    role: Role,
) -> Result<()> {
    if let Some(other) = by_email(conn, email.as_str())? {
        if other.id != id {
            return Err(Error::Forbidden(format!(
                "Another account here ({}) has your college address {}. Ask the lab staff.",
                other.username,
                email.as_str()
            )));
        }
    }
    conn.prepare_cached(
        "UPDATE users SET external_id = ?2, email = ?3, display_name = ?4, role = ?5,
                          email_verified_at = coalesce(email_verified_at, ?6)
          WHERE id = ?1",
    )?
    .execute(params![
        id,
        external_id,
        email.as_str(),
        name.as_str(),
        role.as_str(),
        now()
    ])?;
    Ok(())
}

/// Hands an account over to another source of identity (staff linking a local account to the
/// directory, or back): a password kept here is dropped when it leaves `local`.
pub fn set_source(conn: &Connection, id: i64, source: AuthSource) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET auth_source = ?2,
                          password_hash = CASE WHEN ?2 = 'local' THEN password_hash ELSE '' END,
                          external_id = CASE WHEN ?2 = auth_source THEN external_id END
          WHERE id = ?1",
    )?
    .execute(params![id, source.as_str()])?;
    Ok(())
}

/// The enabled accounts from `source`, by username.
pub fn enabled_from(conn: &Connection, source: AuthSource) -> Result<Vec<User>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users WHERE auth_source = ?1 AND disabled_at IS NULL ORDER BY username"
    ))?;
    let rows = stmt
        .query_map([source.as_str()], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_username(conn: &Connection, username: &str) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"))?
        .query_row([username], from_row)
        .optional()?)
}

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE email = ?1"))?
        .query_row([email], from_row)
        .optional()?)
}

/// The account `source` knows by `external_id` (single sign-on: the provider's subject).
pub fn by_external(
    conn: &Connection,
    source: AuthSource,
    external_id: &str,
) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users WHERE auth_source = ?1 AND external_id = ?2"
        ))?
        .query_row(params![source.as_str(), external_id], from_row)
        .optional()?)
}

/// An account staff handed over to `source` that has not logged in through it yet (so its
/// identity there is not known), by username.
pub fn linked_waiting(
    conn: &Connection,
    source: AuthSource,
    username: &str,
) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users
              WHERE auth_source = ?1 AND username = ?2 AND external_id IS NULL"
        ))?
        .query_row(params![source.as_str(), username], from_row)
        .optional()?)
}

/// The account and its password hash, found by username or by email.
pub fn for_login(conn: &Connection, login: &str) -> Result<Option<(User, String)>> {
    let column = if login.contains('@') {
        "email"
    } else {
        "username"
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, password_hash FROM users WHERE {column} = ?1"
        ))?
        .query_row([login], |r| Ok((from_row(r)?, r.get(COLUMN_COUNT)?)))
        .optional()?)
}

pub fn password_hash(conn: &Connection, id: i64) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?)
}

pub fn set_password_hash(conn: &Connection, id: i64, hash: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, hash, now()])?;
    Ok(())
}

/// The same password, hashed again with today's parameters (not a change of password): only
/// over the hash it was checked against (a change or reset meanwhile wins).
pub fn rehash(conn: &Connection, id: i64, old: &str, hash: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
    )?
    .execute(params![id, old, hash])?;
    Ok(())
}

pub fn set_role(conn: &Connection, id: i64, role: Role) -> Result<()> {
    conn.prepare_cached("UPDATE users SET role = ?2 WHERE id = ?1")?
        .execute(params![id, role.as_str()])?;
    Ok(())
}

pub fn set_disabled(conn: &Connection, id: i64, reason: Option<&str>) -> Result<()> {
    match reason {
        Some(r) => conn
            .prepare_cached(
                "UPDATE users SET disabled_at = ?2, disabled_reason = ?3 WHERE id = ?1",
            )?
            .execute(params![id, now(), r])?,
        None => conn
            .prepare_cached(
                "UPDATE users SET disabled_at = NULL, disabled_reason = NULL WHERE id = ?1",
            )?
            .execute([id])?,
    };
    Ok(())
}

pub fn mark_login(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")?
        .execute(params![id, now()])?;
    Ok(())
}

/// How many enabled admins there are (the last one may not be demoted or disabled).
pub fn active_admins(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL")?
        .query_row([], |r| r.get(0))?)
}

/// Escapes `%`, `_` and `\` so text typed into a search box matches literally in LIKE.
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The ids of the users whose username holds `text` (any case): through the trigram index
/// (`users_search`) when the text has three characters or more, else by reading every name.
pub fn ids_named_like(conn: &Connection, text: &str) -> Result<Vec<i64>> {
    let want = text.to_lowercase();
    // LIKE without ESCAPE keeps the index usable: a `%` or `_` in the text matches more than
    // itself there, and the check below keeps only names that hold the text as typed.
    let rows: Vec<(i64, String)> = if text.chars().count() >= 3 {
        conn.prepare_cached("SELECT rowid, username FROM users_search WHERE username LIKE ?1")?
            .query_map([format!("%{text}%")], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    } else {
        conn.prepare_cached("SELECT id, username FROM users WHERE instr(lower(username), ?1) > 0")?
            .query_map([&want], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    Ok(rows
        .into_iter()
        .filter(|(_, name)| name.to_lowercase().contains(&want))
        .map(|(id, _)| id)
        .collect())
}

/// Search by username, email or name (any part, any case), optionally one role; a page of
/// results ordered by username, and the total.
pub fn search(
    conn: &Connection,
    q: &str,
    role: Option<Role>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<User>, u64)> {
    let pat = like_pattern(q.trim());
    let role = role.map(Role::as_str);
    let filter = "(username LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\' OR display_name LIKE ?1 ESCAPE '\\')
                  AND (?2 IS NULL OR role = ?2)";
    let total: u64 = conn.query_row(
        &format!("SELECT count(*) FROM users WHERE {filter}"),
        params![pat, role],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users WHERE {filter} ORDER BY username LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(params![pat, role, limit, offset as i64], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// Marks the email address confirmed.
pub fn set_verified(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, ?2) WHERE id = ?1",
    )?
    .execute(params![id, now()])?;
    Ok(())
}

/// How a staff member hears of new requests: `each`, `daily` or `none`.
pub fn request_mail(conn: &Connection, id: i64) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT request_mail FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?)
}

pub fn set_request_mail(conn: &Connection, id: i64, how: &str) -> Result<()> {
    if !["each", "daily", "none"].contains(&how) {
        return Err(FieldError::new("request_mail", "Choose each, daily or none.").into());
    }
    conn.prepare_cached("UPDATE users SET request_mail = ?2 WHERE id = ?1")?
        .execute(params![id, how])?;
    Ok(())
}
