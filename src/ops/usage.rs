//! What slices use: samples of the beancounter-shaped counters each node reports (`usage`),
//! kept for `usage_keep_days`, shown against the plan (the chart is `web::chart`),
//! and watched: when a resource's failcnt rises (the limit refused or stopped something), staff
//! see it in the audit log and the owner gets one mail a day about it.

use rusqlite::Connection;
use serde::Serialize;

use crate::domain::Counter;
use crate::error::Result;
use crate::records::usage as records;

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
        let before = records::last(conn, slice_id, &resource)?;
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        let sample = records::Sample {
            held: clamp(c.held),
            maxheld: clamp(c.maxheld),
            barrier: clamp(c.barrier),
            limit: clamp(c.limit),
            failcnt: clamp(c.failcnt),
        };
        records::insert(conn, slice_id, &resource, at, &sample)?;
        if before.is_none_or(|(t, _)| at >= t) {
            records::set_latest(conn, slice_id, &resource, at, &sample)?;
        }
        let before = before.map(|(_, f)| f);
        // The first sample of a slice sets the baseline; a counter that went down (the
        // container was restarted) starts a new one.
        if let Some(b) = before {
            if sample.failcnt > b {
                risen.push((resource, (sample.failcnt - b) as u64));
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
        crate::ops::slices::get(conn, slice_id)?.ok_or(crate::error::Error::NotFound("slice"))?;
    crate::ops::accounts::audit::record(
        conn,
        crate::ops::accounts::audit::Event::LimitHit,
        &crate::ops::accounts::Actor::default(),
        crate::records::audit::Subject::Slice(slice.id),
        &format!("{resource}: {hits} more time(s)"),
    )?;
    let first = records::count_alert(conn, slice_id, resource, day, hits as i64)?;
    if first {
        let latest = latest(conn, slice_id)?;
        let limit = latest
            .iter()
            .find(|s| s.resource == resource)
            .map(|s| s.limit_text.clone())
            .unwrap_or_default();
        crate::ops::slices::mail_owner(
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

pub use crate::records::usage::prune;

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
        "memory" | "diskspace" => format!("{} MB", v / (1024 * 1024)),
        "numproc" => format!("{v} processes"),
        _ => v.to_string(),
    }
}

/// The newest sample of each resource of a slice.
pub fn latest(conn: &Connection, slice_id: i64) -> Result<Vec<Latest>> {
    Ok(shown(records::latest(conn, slice_id)?))
}

/// [`latest`] of every slice of a user that is not destroyed, by slice.
pub fn latest_for_user(
    conn: &Connection,
    user_id: i64,
) -> Result<std::collections::HashMap<i64, Vec<Latest>>> {
    Ok(records::latest_for_user(conn, user_id)?
        .into_iter()
        .map(|(id, rows)| (id, shown(rows)))
        .collect())
}

fn shown(rows: Vec<records::LatestRow>) -> Vec<Latest> {
    rows.into_iter()
        .map(|(resource, at, held, lim, failcnt)| {
            // cgroups say "no limit" with a huge number.
            let limited = lim > 0 && lim < i64::MAX / 4;
            Latest {
                name: resource_name(&resource).to_string(),
                at,
                held_text: amount(&resource, held),
                limit_text: if limited {
                    amount(&resource, lim)
                } else {
                    "no limit".into()
                },
                percent: limited
                    .then(|| ((held as f64 / lim as f64) * 100.0).clamp(0.0, 100.0) as u8),
                failcnt,
                resource,
            }
        })
        .collect()
}

/// (time, held) of one resource since `since`, oldest first, and the newest limit.
pub fn series(
    conn: &Connection,
    slice_id: i64,
    resource: &str,
    since: i64,
) -> Result<(Vec<(i64, i64)>, i64)> {
    let rows = records::series(conn, slice_id, resource, since)?;
    let lim = rows.last().map_or(0, |r| r.2);
    let points = rows.into_iter().map(|(at, held, _)| (at, held)).collect();
    Ok((points, lim))
}
