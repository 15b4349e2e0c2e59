//! The usage tables: `usage_samples` (every sample, kept for a while), `usage_latest` (the
//! newest of each resource of a slice) and `limit_alerts` (limits hit, by day).

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// One resource's counters, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub held: i64,
    pub maxheld: i64,
    pub barrier: i64,
    pub limit: i64,
    pub failcnt: i64,
}

/// (time, failcnt) of the newest sample of a slice's resource.
pub fn last(conn: &Connection, slice_id: i64, resource: &str) -> Result<Option<(i64, i64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT at, failcnt FROM usage_latest WHERE slice_id = ?1 AND resource = ?2",
        )?
        .query_row(params![slice_id, resource], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn insert(conn: &Connection, slice_id: i64, resource: &str, at: i64, s: &Sample) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO usage_samples (slice_id, resource, at, held, maxheld, barrier, lim, failcnt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        slice_id, resource, at, s.held, s.maxheld, s.barrier, s.limit, s.failcnt
    ])?;
    Ok(())
}

pub fn set_latest(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    at: i64,
    s: &Sample,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO usage_latest (slice_id, resource, at, held, lim, failcnt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![slice_id, resource, at, s.held, s.limit, s.failcnt])?;
    Ok(())
}

/// Counts a limit hit on `day`; true when it is the first of that day for the resource.
pub fn count_alert(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    day: &str,
    hits: i64,
) -> Result<bool> {
    let seen_today = conn
        .prepare_cached(
            "SELECT 1 FROM limit_alerts WHERE slice_id = ?1 AND resource = ?2 AND day = ?3",
        )?
        .query_row(params![slice_id, resource, day], |_| Ok(()))
        .optional()?
        .is_some();
    conn.prepare_cached(
        "INSERT INTO limit_alerts (slice_id, resource, day, hits) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (slice_id, resource, day) DO UPDATE SET hits = hits + excluded.hits",
    )?
    .execute(params![slice_id, resource, day, hits])?;
    Ok(!seen_today)
}

/// Drops samples older than `before`.
pub fn prune(conn: &Connection, before: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM usage_samples WHERE at < ?1")?
        .execute([before])?)
}

/// (resource, time, held, limit, failcnt)
pub type LatestRow = (String, i64, i64, i64, i64);

/// The newest sample of each resource of a slice.
pub fn latest(conn: &Connection, slice_id: i64) -> Result<Vec<LatestRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT resource, at, held, lim, failcnt FROM usage_latest WHERE slice_id = ?1
          ORDER BY resource",
    )?;
    let rows = stmt
        .query_map([slice_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The newest sample of each resource of every slice of a user that is not destroyed, by
/// slice (one statement for a whole dashboard).
pub fn latest_for_user(
    conn: &Connection,
    user_id: i64,
) -> Result<std::collections::HashMap<i64, Vec<LatestRow>>> {
    // The user's slices by index, then each one's rows in key order (slice, resource): no
    // list to build and no sort, which cost more than the rows when there are none.
    let mut stmt = conn.prepare_cached(
        "SELECT l.slice_id, l.resource, l.at, l.held, l.lim, l.failcnt
           FROM slices s CROSS JOIN usage_latest l
          WHERE s.user_id = ?1 AND s.state <> 'destroyed' AND l.slice_id = s.id",
    )?;
    let mut out: std::collections::HashMap<i64, Vec<LatestRow>> = Default::default();
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })?;
    for row in rows {
        let (id, latest) = row?;
        out.entry(id).or_default().push(latest);
    }
    // By resource, as the key walk gives them (said here, not left to the plan).
    for rows in out.values_mut() {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(out)
}

/// (time, held, limit) of one resource since `since`, oldest first.
pub fn series(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    since: i64,
) -> Result<Vec<(i64, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, held, lim FROM usage_samples WHERE slice_id = ?1 AND resource = ?2 AND at >= ?3
          ORDER BY at",
    )?;
    let rows = stmt
        .query_map(params![slice_id, resource, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
