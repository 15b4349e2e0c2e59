//! The `quotas` table: the default rule, rules per course and per user (`plans` is a
//! comma-separated list of plan ids; empty means every plan).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// (max slices, plans) of a user's own rule.
pub fn for_user(conn: &Connection, user_id: i64) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT max_slices, plans FROM quotas WHERE scope = 'user' AND user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// (max slices, plans) of a course's rule (the course compared without case).
pub fn for_course(conn: &Connection, course: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached("SELECT max_slices, plans FROM quotas WHERE scope = 'course' AND course = ?1 COLLATE NOCASE")?
            .query_row([course],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// (max slices, plans) of the default rule.
pub fn default_rule(conn: &Connection) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached("SELECT max_slices, plans FROM quotas WHERE scope = 'default'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// A user's live slices (all but destroyed and denied; with `approved_only`, requests that
/// wait do not count either), leaving `except` out.
pub fn live_slices(
    conn: &Connection,
    user_id: i64,
    except: Option<i64>,
    approved_only: bool,
) -> Result<i64> {
    let sql = if approved_only {
        "SELECT count(*) FROM slices WHERE user_id = ?1 AND id IS NOT ?2
           AND state NOT IN ('destroyed', 'denied', 'requested')"
    } else {
        "SELECT count(*) FROM slices WHERE user_id = ?1 AND id IS NOT ?2
           AND state NOT IN ('destroyed', 'denied')"
    };
    Ok(conn.query_row(sql, params![user_id, except], |r| r.get(0))?)
}

/// (id, scope, course, username, max slices, plans) of every rule, the default first.
#[allow(clippy::type_complexity)]
pub fn all(conn: &Connection) -> Result<Vec<(i64, String, String, Option<String>, i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.id, q.scope, q.course, u.username, q.max_slices, q.plans
           FROM quotas q LEFT JOIN users u ON u.id = q.user_id
          ORDER BY q.scope = 'default' DESC, q.scope, q.course, u.username",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn set_default(conn: &Connection, max_slices: i64, plans: &str) -> Result<()> {
    conn.prepare_cached("UPDATE quotas SET max_slices = ?1, plans = ?2 WHERE scope = 'default'")?
        .execute(params![max_slices, plans])?;
    Ok(())
}

/// Puts a course's rule in place of the one it had.
pub fn replace_for_course(
    conn: &Connection,
    course: &str,
    max_slices: i64,
    plans: &str,
) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM quotas WHERE scope = 'course' AND course = ?1 COLLATE NOCASE",
    )?
    .execute([course])?;
    conn.prepare_cached(
        "INSERT INTO quotas (scope, course, max_slices, plans) VALUES ('course', ?1, ?2, ?3)",
    )?
    .execute(params![course, max_slices, plans])?;
    Ok(())
}

/// Puts a user's rule in place of the one they had.
pub fn replace_for_user(
    conn: &Connection,
    user_id: i64,
    max_slices: i64,
    plans: &str,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM quotas WHERE scope = 'user' AND user_id = ?1")?
        .execute([user_id])?;
    conn.prepare_cached(
        "INSERT INTO quotas (scope, user_id, max_slices, plans) VALUES ('user', ?1, ?2, ?3)",
    )?
    .execute(params![user_id, max_slices, plans])?;
    Ok(())
}

/// Removes a course or user rule (never the default); how many went.
pub fn remove(conn: &Connection, id: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM quotas WHERE id = ?1 AND scope <> 'default'")?
        .execute([id])?)
}
