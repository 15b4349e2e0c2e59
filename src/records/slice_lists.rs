//! Slices as staff list them: the waiting requests, their courses, and search.

use rusqlite::{params, Connection, OptionalExtension, Row};
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
    let cols = prefixed_columns();
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

/// The slices' columns as `s.COLUMN`, for statements that join slices (`s`) to others.
fn prefixed_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn listed(r: &Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        slice: from_row(r)?,
        username: r.get(19)?,
        display_name: r.get(20)?,
        node: r.get(21)?,
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

/// Staff search: slices whose owner's username or node's name holds the text (any case), or
/// whose address starts with it, or of the course with that code; optionally in one state. A page, newest first, and the total.
///
/// Every part is read through an index (users by a trigram index, slices by owner, by node and
/// by address), never by reading every slice. Without search text the total comes from
/// `slice_counts` (kept by triggers, no scan) and the page is read from the nearer end of the
/// id order: the last page costs what the first does.
pub fn search(
    conn: &Connection,
    q: &str,
    state: Option<State>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Listed>, u64)> {
    let q = q.trim();
    if q.is_empty() {
        return all(conn, state, limit, offset);
    }
    let st = state.map(State::as_str);
    let users = super::users::ids_named_like(conn, q)?;
    let nodes: Vec<i64> = conn
        .prepare_cached("SELECT id FROM nodes WHERE instr(lower(name), lower(?1)) > 0")?
        .query_map([q], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut ids: Vec<i64> = Vec::new();
    let mut collect =
        |stmt: &mut rusqlite::CachedStatement<'_>, args: &[&dyn rusqlite::ToSql]| -> Result<()> {
            for id in stmt.query_map(args, |r| r.get(0))? {
                ids.push(id?);
            }
            Ok(())
        };
    if !users.is_empty() {
        let list = serde_json::to_string(&users).unwrap_or_default();
        collect(
            &mut conn.prepare_cached(
                "SELECT id FROM slices WHERE user_id IN (SELECT value FROM json_each(?1))
                   AND (?2 IS NULL OR state = ?2)",
            )?,
            &[&list, &st],
        )?;
    }
    if !nodes.is_empty() {
        let list = serde_json::to_string(&nodes).unwrap_or_default();
        match st {
            None => collect(
                &mut conn.prepare_cached(
                    "SELECT id FROM slices WHERE node_id IN (SELECT value FROM json_each(?1))",
                )?,
                &[&list],
            )?,
            Some(st) => collect(
                &mut conn.prepare_cached(
                    "SELECT id FROM slices WHERE node_id IN (SELECT value FROM json_each(?1))
                       AND state = ?2",
                )?,
                &[&list, &st],
            )?,
        }
    }
    // A course, by its code as defined (any case).
    let course: Option<String> = conn
        .prepare_cached("SELECT code FROM courses WHERE code = ?1")?
        .query_row([q], |r| r.get(0))
        .optional()?;
    if let Some(course) = course {
        collect(
            &mut conn.prepare_cached(
                "SELECT id FROM slices WHERE course = ?1 AND course <> '' AND (?2 IS NULL OR state = ?2)",
            )?,
            &[&course, &st],
        )?;
    }
    if let Some((from, to)) = address_range(q) {
        collect(
            &mut conn.prepare_cached(
                "SELECT id FROM slices WHERE ip >= ?1 AND ip < ?2 AND (?3 IS NULL OR state = ?3)",
            )?,
            &[&from, &to, &st],
        )?;
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let total = ids.len() as u64;
    let limit = u64::from(limit.max(1));
    let offset = offset.min(total.saturating_sub(1) / limit * limit);
    let page: Vec<i64> = ids
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .copied()
        .collect();
    Ok((listed_by_id(conn, &page)?, total))
}

/// The addresses that start with `q` as a range of strings, when `q` can start one.
fn address_range(q: &str) -> Option<(String, String)> {
    if !q
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
    {
        return None;
    }
    // The first string after every one that starts with q: its last byte plus one ('.'+1 is
    // '/', '9'+1 is ':', all ASCII).
    let mut to = q.as_bytes().to_vec();
    *to.last_mut()? += 1;
    Some((q.to_string(), String::from_utf8(to).ok()?))
}

/// Slices with their owners' and nodes' names, newest first.
fn listed_by_id(conn: &Connection, ids: &[i64]) -> Result<Vec<Listed>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let cols = prefixed_columns();
    let list = serde_json::to_string(ids).unwrap_or_default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, n.name FROM slices s JOIN users u ON u.id = s.user_id
         LEFT JOIN nodes n ON n.id = s.node_id
         WHERE s.id IN (SELECT value FROM json_each(?1)) ORDER BY s.id DESC"
    ))?;
    let rows = stmt
        .query_map([list], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
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
    // The page's ids, read by index from the nearer end; then only they are joined.
    let ids = match (st.is_some(), oldest_first) {
        (false, false) => {
            "SELECT id FROM slices WHERE ?1 IS NULL ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        }
        (false, true) => "SELECT id FROM slices WHERE ?1 IS NULL ORDER BY id LIMIT ?2 OFFSET ?3",
        (true, false) => {
            "SELECT id FROM slices WHERE state = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
        }
        (true, true) => "SELECT id FROM slices WHERE state = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
    };
    let page: Vec<i64> = conn
        .prepare_cached(ids)?
        .query_map(params![st, take as i64, skip as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((listed_by_id(conn, &page)?, total))
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
