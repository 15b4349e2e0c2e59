//! Slices as staff list them: the waiting requests, their courses, and search.

use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::slices::{from_row, Slice, State, COLUMNS};
use crate::error::Result;
use crate::store::now;

/// A slice with its owner's and node's names, for staff lists.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub slice: Slice,
    pub username: String,
    pub display_name: String,
    pub node: Option<String>,
}

/// Requests waiting for staff, oldest first; optionally one course, or older than some age.
pub fn waiting_requests(
    conn: &Connection,
    course: &str,
    older_than_secs: i64,
) -> Result<Vec<Listed>> {
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, NULL FROM slices s JOIN users u ON u.id = s.user_id
         WHERE s.state = 'requested' AND (?1 = '' OR s.course = ?1) AND s.requested_at <= ?2
         ORDER BY s.requested_at, s.id LIMIT 500"
    ))?;
    let rows = stmt
        .query_map(params![course, now() - older_than_secs], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many requests wait (as [`waiting_requests`] filters them; it shows at most 500) and
/// the newest one's id.
pub fn waiting_count(conn: &Connection, course: &str, older_than_secs: i64) -> Result<(u64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), coalesce(max(id), 0) FROM slices
              WHERE state = 'requested' AND (?1 = '' OR course = ?1) AND requested_at <= ?2",
        )?
        .query_row(params![course, now() - older_than_secs], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?)
}

/// The ids of every waiting request (as [`waiting_requests`] filters them) up to `up_to`, the
/// newest the staff saw: approving "all" approves what they saw, not what came after.
pub fn waiting_ids(
    conn: &Connection,
    course: &str,
    older_than_secs: i64,
    up_to: i64,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM slices
          WHERE state = 'requested' AND (?1 = '' OR course = ?1) AND requested_at <= ?2 AND id <= ?3
          ORDER BY requested_at, id",
    )?;
    let rows = stmt
        .query_map(params![course, now() - older_than_secs, up_to], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(rows)
}

fn listed(r: &Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        slice: from_row(r)?,
        username: r.get(18)?,
        display_name: r.get(19)?,
        node: r.get(20)?,
    })
}

/// The courses named in waiting requests (for the filter).
pub fn waiting_courses(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT course FROM slices WHERE state = 'requested' AND course <> '' ORDER BY course",
    )?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Staff search: by username, node, address or state; a page and the total.
///
/// Without search text the total comes from `slice_counts` (kept by triggers, no scan) and
/// the page is read from the nearer end of the id order: the last page costs what the first
/// does, whatever the number of slices. Only the page's 50 rows are joined to their owners
/// and nodes.
pub fn search(
    conn: &Connection,
    q: &str,
    state: Option<State>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Listed>, u64)> {
    if q.trim().is_empty() {
        return all(conn, state, limit, offset);
    }
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let pat = super::users::like_pattern(q.trim());
    let st = state.map(State::as_str);
    // The users and nodes whose names match are found once (each a list of ids), not once
    // per slice; a slice then matches by two integer lookups and its address.
    let filter = "(s.user_id IN (SELECT id FROM users WHERE username LIKE ?1 ESCAPE '\\')
          OR s.node_id IN (SELECT id FROM nodes WHERE name LIKE ?1 ESCAPE '\\')
          OR s.ip LIKE ?1 ESCAPE '\\') AND (?2 IS NULL OR s.state = ?2)";
    let total: u64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM slices s WHERE {filter}"))?
        .query_row(params![pat, st], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, n.name FROM slices s JOIN users u ON u.id = s.user_id
         LEFT JOIN nodes n ON n.id = s.node_id WHERE {filter} ORDER BY s.id DESC LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(params![pat, st, limit, offset as i64], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// Every slice (or every slice in one state), newest first: a page and the total. A page past
/// the end is the last page.
fn all(
    conn: &Connection,
    state: Option<State>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Listed>, u64)> {
    let st = state.map(State::as_str);
    let total: u64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(n), 0) FROM slice_counts WHERE (?1 IS NULL OR state = ?1)",
        )?
        .query_row(params![st], |r| r.get(0))?;
    let limit = u64::from(limit.max(1));
    let offset = offset.min(total.saturating_sub(1) / limit * limit);
    let take = limit.min(total - offset);
    // Rows after this page, in id order: when fewer than before it, read from the oldest end.
    let after = total - offset - take;
    let (skip, oldest_first) = if after < offset {
        (after, true)
    } else {
        (offset, false)
    };
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The page's first and last id: its rows are the ones between them (in the state).
    let bounds = match (st.is_some(), oldest_first) {
        (false, false) => "SELECT min(id), max(id) FROM (SELECT id FROM slices WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2 OFFSET ?3)",
        (false, true) => "SELECT min(id), max(id) FROM (SELECT id FROM slices WHERE ?1 IS NULL ORDER BY id LIMIT ?2 OFFSET ?3)",
        (true, false) => "SELECT min(id), max(id) FROM (SELECT id FROM slices WHERE state = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3)",
        (true, true) => "SELECT min(id), max(id) FROM (SELECT id FROM slices WHERE state = ?1 ORDER BY id LIMIT ?2 OFFSET ?3)",
    };
    let (low, high): (Option<i64>, Option<i64>) = conn
        .prepare_cached(bounds)?
        .query_row(params![st, take as i64, skip as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(low), Some(high)) = (low, high) else {
        return Ok((Vec::new(), total));
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, n.name FROM slices s JOIN users u ON u.id = s.user_id
         LEFT JOIN nodes n ON n.id = s.node_id
         WHERE s.id BETWEEN ?2 AND ?3 AND (?1 IS NULL OR s.state = ?1) ORDER BY s.id DESC"
    ))?;
    let rows = stmt
        .query_map(params![st, low, high], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// (username, name, course, asked at) of the requests that wait, oldest first (at most 200).
pub fn for_digest(conn: &Connection) -> Result<Vec<(String, String, String, i64)>> {
    let rows = conn
        .prepare_cached(
            "SELECT u.username, u.display_name, s.course, s.requested_at FROM slices s JOIN users u ON u.id = s.user_id
             WHERE s.state = 'requested' ORDER BY s.requested_at LIMIT 200",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}
