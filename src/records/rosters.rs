//! The `roster_entries` table: the students staff listed for a course, and who of them has an
//! account here, a slice of the course, or neither yet.
//!
//! An entry names a person by address or by username (or both). It matches an account whose
//! address is that one and confirmed, or, by username, an account the college directory or
//! single sign-on vouches for (a local account's username is whatever its owner typed, so it
//! proves nothing).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::users::User;
use crate::error::Result;
use crate::store::now;

/// One line of a course's roster, as staff gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Lowercased address, if the line gave one.
    pub email: Option<String>,
    pub username: Option<String>,
    pub name: String,
}

impl NewEntry {
    /// What identifies the line within its course: the address, else the username.
    pub fn key(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.username.clone())
            .unwrap_or_default()
    }
}

/// Adds an entry, or brings the name of the one with the same key up to date. Whether it is
/// new.
pub fn put(conn: &Connection, course: &str, e: &NewEntry, added_by: i64) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO roster_entries (course, entry, email, username, name, added_by, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (course, entry) DO NOTHING",
        )?
        .execute(params![
            course,
            e.key(),
            e.email,
            e.username,
            e.name,
            added_by,
            now()
        ])?;
    if added == 0 {
        conn.prepare_cached(
            "UPDATE roster_entries SET name = ?3,
                    username = coalesce(?4, username), email = coalesce(?5, email)
              WHERE course = ?1 AND entry = ?2",
        )?
        .execute(params![course, e.key(), e.name, e.username, e.email])?;
    }
    Ok(added == 1)
}

/// Notes that the entry's invitation was queued.
pub fn mark_invited(conn: &Connection, course: &str, entry: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE roster_entries SET invited_at = ?3 WHERE course = ?1 AND entry = ?2",
    )?
    .execute(params![course, entry, now()])?;
    Ok(())
}

/// Takes an entry off the roster. Whether there was one.
pub fn remove(conn: &Connection, course: &str, entry: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM roster_entries WHERE course = ?1 AND entry = ?2")?
        .execute(params![course, entry])?
        == 1)
}

/// The account an entry stands for, in SQL: `r` is the entry's row.
const MATCH: &str = "(SELECT u.id FROM users u
      WHERE (r.email IS NOT NULL AND u.email = r.email AND u.email_verified_at IS NOT NULL)
         OR (r.username IS NOT NULL AND u.username = r.username AND u.auth_source <> 'local')
      ORDER BY u.id LIMIT 1)";

/// Where someone on a roster stands.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub entry: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub name: String,
    pub added_at: i64,
    pub invited_at: Option<i64>,
    /// Their account here, once they have one.
    pub account: Option<String>,
    /// The state of their newest live slice of the course, if any.
    pub slice_state: Option<String>,
    pub slice_id: Option<i64>,
}

/// A course's roster, by name, with where each person stands.
pub fn for_course(conn: &Connection, course: &str) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.entry, r.email, r.username, r.name, r.added_at, r.invited_at, u.username,
                s.state, s.id
           FROM roster_entries r
           LEFT JOIN users u ON u.id = {MATCH}
           LEFT JOIN slices s ON s.id = (
                SELECT max(id) FROM slices WHERE user_id = u.id AND course = r.course
                   AND state NOT IN ('denied', 'destroyed'))
          WHERE r.course = ?1
          ORDER BY lower(r.name), r.entry"
    ))?;
    let rows = stmt
        .query_map([course], |r| {
            Ok(Row {
                entry: r.get(0)?,
                email: r.get(1)?,
                username: r.get(2)?,
                name: r.get(3)?,
                added_at: r.get(4)?,
                invited_at: r.get(5)?,
                account: r.get(6)?,
                slice_state: r.get(7)?,
                slice_id: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many people each course's roster lists, by course code.
pub fn counts(conn: &Connection) -> Result<std::collections::HashMap<String, i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT course, count(*) FROM roster_entries GROUP BY course")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Whether `user` is on `course`'s roster, and if so the staff member who put them there
/// (their approval in advance), when that account is still there.
pub fn listed_by(conn: &Connection, course: &str, user: &User) -> Result<Option<Option<i64>>> {
    let verified = user.email_verified_at.is_some();
    let vouched = user.source != super::users::AuthSource::Local;
    Ok(conn
        .prepare_cached(
            "SELECT added_by FROM roster_entries
              WHERE course = ?1
                AND ((?3 AND email = ?2) OR (?5 AND username = ?4))
              ORDER BY added_at LIMIT 1",
        )?
        .query_row(
            params![course, user.email, verified, user.username, vouched],
            |r| r.get(0),
        )
        .optional()?)
}
