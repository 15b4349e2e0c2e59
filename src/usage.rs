//! What slices use: samples of the beancounter-shaped counters each node reports (`usage`),
//! kept for `usage_keep_days`, shown against the plan with a small chart drawn here (SVG),
//! and watched: when a resource's failcnt rises (the limit refused or stopped something), staff
//! see it in the audit log and the owner gets one mail a day about it.

use std::fmt::Write as _;

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

/// The chart of a slice's memory over the last day, drawn once per new sample: the samples
/// up to the newest one never change, so the drawing is kept (by slice and newest sample time).
pub fn memory_chart(conn: &Connection, slice_id: i64, newest: i64, label: &str) -> Result<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DRAWN: OnceLock<Mutex<HashMap<i64, (i64, String)>>> = OnceLock::new();
    let drawn = DRAWN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some((at, svg)) = drawn
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&slice_id)
    {
        if *at == newest {
            return Ok(svg.clone());
        }
    }
    let (points, limit) = series(conn, slice_id, "memory", newest - 86_400)?;
    let svg = chart(&points, limit, label);
    let mut map = drawn.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() > 20_000 {
        map.clear();
    }
    map.insert(slice_id, (newest, svg.clone()));
    Ok(svg)
}

/// What a page shows of a slice's usage: the newest sample of each resource and the memory
/// chart of the last day (empty when there are no samples).
pub fn for_page(conn: &Connection, slice_id: i64, hostname: &str) -> Result<(Vec<Latest>, String)> {
    let usage = latest(conn, slice_id)?;
    let chart = match usage.iter().find(|u| u.resource == "memory") {
        Some(m) => memory_chart(
            conn,
            slice_id,
            m.at,
            &format!("Memory used by {hostname} over the last day"),
        )?,
        None => String::new(),
    };
    Ok((usage, chart))
}

/// A small line chart of `points` against `limit`, as SVG (presentation attributes only, so
/// the page's content security policy allows it). Empty when there are fewer than two points.
pub fn chart(points: &[(i64, i64)], limit: i64, label: &str) -> String {
    if points.len() < 2 {
        return String::new();
    }
    // At most 72 points (the highest of each run of samples): the line looks the same and
    // the page stays small.
    let bucketed: Vec<(i64, i64)>;
    let points = if points.len() > 72 {
        let per = points.len().div_ceil(72);
        bucketed = points
            .chunks(per)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|p| p.1).max().unwrap_or(0)))
            .collect();
        &bucketed[..]
    } else {
        points
    };
    let (w, h, pad) = (320.0_f64, 80.0_f64, 4.0_f64);
    let (t0, t1) = (points[0].0 as f64, points[points.len() - 1].0 as f64);
    let top = points
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or(0)
        .max(if limit > 0 && limit < i64::MAX / 4 {
            limit
        } else {
            0
        })
        .max(1) as f64;
    let x = |t: i64| pad + (t as f64 - t0) / (t1 - t0).max(1.0) * (w - 2.0 * pad);
    let y = |v: i64| h - pad - (v as f64 / top) * (h - 2.0 * pad);
    let mut path = String::new();
    for (i, (t, v)) in points.iter().enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { " L" },
            x(*t),
            y(*v)
        );
    }
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        crate::web::error::escape(label)
    );
    svg.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\" stroke=\"#d0d7de\"/>"
    ));
    if limit > 0 && limit < i64::MAX / 4 {
        let ly = y(limit);
        svg.push_str(&format!(
            "<line x1=\"{pad}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"#b42318\" stroke-dasharray=\"4 3\"/>",
            w - pad
        ));
    }
    svg.push_str(&format!(
        "<path d=\"{path}\" fill=\"none\" stroke=\"#0b5cad\" stroke-width=\"2\"/></svg>"
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_to_the_limit_and_needs_two_points() {
        assert_eq!(chart(&[(0, 5)], 10, "x"), "");
        let svg = chart(&[(0, 0), (60, 5), (120, 10)], 20, "memory <used>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("stroke-dasharray"), "the limit line");
        assert!(svg.contains("aria-label=\"memory &lt;used&gt;\""));
        assert!(!svg.contains("style="), "no inline styles (CSP)");
        // The last point is at half height of the drawable area (10 of 20).
        assert!(svg.contains("L316.0,40.0"), "{svg}");
    }
}
