//! The usage chart on the dashboard and the staff slice page: a slice's memory over the last
//! day, drawn on the server as SVG from `usage`'s samples.

use std::fmt::Write as _;

use rusqlite::Connection;

use crate::error::Result;
use crate::ops::usage::{latest, series, Latest};

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
    with_chart(conn, slice_id, hostname, latest(conn, slice_id)?)
}

/// The slice's newest samples (read already) and their chart.
pub fn with_chart(
    conn: &Connection,
    slice_id: i64,
    hostname: &str,
    usage: Vec<Latest>,
) -> Result<(Vec<Latest>, String)> {
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
