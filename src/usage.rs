//! What slices use: samples of the beancounter-shaped counters each node reports (`usage`),
//! kept for `usage_keep_days`, shown against the plan (the chart is `web::chart`),
//! and watched: when a resource's failcnt rises (the limit refused or stopped something), staff
//! see it in the audit log and the owner gets one mail a day about it.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::agent::driver::Counter;
use crate::error::Result;

/// Records a node's report for one slice; returns the resources whose failcnt rose since the
/// last sample, with by how much.
pub fn record(
    conn: &Connection,
    slice_id: i64,
    at: i64,
    counters: &[Counter],
) -> Result<Vec<(String, u64)>> {
    let mut risen = Vec::new();
    for c in counters {
        let resource = c.resource.chars().take(40).collect::<String>();
        let before: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT at, failcnt FROM usage_latest WHERE slice_id = ?1 AND resource = ?2",
            )?
            .query_row(params![slice_id, resource], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO usage_samples (slice_id, resource, at, held, maxheld, barrier, lim, failcnt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            slice_id,
            resource,
            at,
            clamp(c.held),
            clamp(c.maxheld),
            clamp(c.barrier),
            clamp(c.limit),
            clamp(c.failcnt)
        ])?;
        if before.is_none_or(|(t, _)| at >= t) {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO usage_latest (slice_id, resource, at, held, lim, failcnt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                slice_id,
                resource,
                at,
                clamp(c.held),
                clamp(c.limit),
                clamp(c.failcnt)
            ])?;
        }
        let before = before.map(|(_, f)| f);
        // The first sample of a slice sets the baseline; a counter that went down (the
        // container was restarted) starts a new one.
        if let Some(b) = before {
            let now = clamp(c.failcnt);
            if now > b {
                risen.push((resource, (now - b) as u64));
            }
        }
    }
    Ok(risen)
}

/// Records that a slice hit a limit: an audit row for staff every time, and a mail to the
/// owner the first time each day (true when one was queued).
pub fn alert(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    hits: u64,
    day: &str,
) -> Result<bool> {
    let slice =
        crate::slices::get(conn, slice_id)?.ok_or(crate::error::Error::NotFound("slice"))?;
    crate::accounts::audit::record(
        conn,
        crate::accounts::audit::Event::LimitHit,
        &crate::accounts::Actor::default(),
        &slice.hostname,
        &format!("{resource}: {hits} more time(s)"),
    )?;
    let seen_today = conn
        .query_row(
            "SELECT 1 FROM limit_alerts WHERE slice_id = ?1 AND resource = ?2 AND day = ?3",
            params![slice_id, resource, day],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    conn.execute(
        "INSERT INTO limit_alerts (slice_id, resource, day, hits) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (slice_id, resource, day) DO UPDATE SET hits = hits + excluded.hits",
        params![slice_id, resource, day, hits as i64],
    )?;
    let first = !seen_today;
    if first {
        let latest = latest(conn, slice_id)?;
        let limit = latest
            .iter()
            .find(|s| s.resource == resource)
            .map(|s| s.limit_text.clone())
            .unwrap_or_default();
        crate::slices::mail_owner(
            conn,
            slice_id,
            crate::mail::Kind::LimitHit,
            serde_json::json!({
                "resource": resource,
                "resource_name": resource_name(resource),
                "hits": hits,
                "limit_text": limit,
            }),
        )?;
    }
    Ok(first)
}

/// Drops samples older than `before`.
pub fn prune(conn: &Connection, before: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM usage_samples WHERE at < ?1", [before])?)
}

fn resource_name(r: &str) -> &str {
    match r {
        "memory" | "privvmpages" => "memory",
        "numproc" => "process",
        "diskspace" => "disk",
        other => other,
    }
}

/// One resource of a slice, as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    pub resource: String,
    pub name: String,
    pub at: i64,
    pub held_text: String,
    pub limit_text: String,
    /// Held against the limit, 0 to 100 (None when there is no limit).
    pub percent: Option<u8>,
    pub failcnt: i64,
}

fn amount(resource: &str, v: i64) -> String {
    match resource {
        "memory" => format!("{} MB", v / (1024 * 1024)),
        "numproc" => format!("{v} processes"),
        _ => v.to_string(),
    }
}

/// The newest sample of each resource of a slice.
pub fn latest(conn: &Connection, slice_id: i64) -> Result<Vec<Latest>> {
    let mut stmt = conn.prepare_cached(
        "SELECT resource, at, held, lim, failcnt FROM usage_latest WHERE slice_id = ?1
          ORDER BY resource",
    )?;
    let rows = stmt
        .query_map([slice_id], |r| {
            let resource: String = r.get(0)?;
            let (held, lim): (i64, i64) = (r.get(2)?, r.get(3)?);
            // cgroups say "no limit" with a huge number.
            let limited = lim > 0 && lim < i64::MAX / 4;
            Ok(Latest {
                name: resource_name(&resource).to_string(),
                at: r.get(1)?,
                held_text: amount(&resource, held),
                limit_text: if limited {
                    amount(&resource, lim)
                } else {
                    "no limit".into()
                },
                percent: limited
                    .then(|| ((held as f64 / lim as f64) * 100.0).clamp(0.0, 100.0) as u8),
                failcnt: r.get(4)?,
                resource,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// (time, held) of one resource since `since`, oldest first, and the newest limit.
pub fn series(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    since: i64,
) -> Result<(Vec<(i64, i64)>, i64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, held, lim FROM usage_samples WHERE slice_id = ?1 AND resource = ?2 AND at >= ?3
          ORDER BY at",
    )?;
    let mut lim = 0;
    let points = stmt
        .query_map(params![slice_id, resource, since], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .map(|row| {
            row.map(|(at, held, l)| {
                lim = l;
                (at, held)
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((points, lim))
}
