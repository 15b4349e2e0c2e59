//! Where a slice goes: the first-come line, the filter and the ranking of nodes, and the
//! container id and address it gets there.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use super::queue;
use crate::domain::{Subnet, VeId};
use crate::error::Result;
use crate::nodes::{self, Node};
use crate::slices::{self, Slice, State};
use crate::store::now;

/// Live slices hold their node's resources.
const LIVE: &str = "('provisioning', 'running', 'stopped', 'destroying')";

/// A node a slice can go to.
struct Candidate {
    node: Node,
    subnet: Subnet,
}

/// Chooses a node for a slice and gives it a container id and an address there, or None when
/// no node has room. Filter: enabled, not draining, heard from recently, has the template,
/// room for the plan's memory, a free address. Rank: most free memory, then fewest slices.
/// First come, first served: while an earlier-approved slice waits, a later one waits behind.
pub fn place(
    conn: &Connection,
    slice: &Slice,
    job_id: i64,
    stale_secs: i64,
) -> Result<Option<Node>> {
    // Another job's placement may have placed this slice since it was read.
    if let Some(node_id) = slices::get(conn, slice.id)?.and_then(|s| s.node_id) {
        queue::checkpoint(conn, job_id, "placed")?;
        return nodes::by_id(conn, node_id);
    }
    // Everyone approved before this slice and not yet placed goes first, in order, in this
    // same transaction; the first that does not fit stops the line.
    let waiting: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM slices WHERE state IN ('approved', 'queued') AND node_id IS NULL
               AND (decided_at < ?1 OR (decided_at = ?1 AND id <= ?2))
             ORDER BY decided_at, id",
        )?
        .query_map(params![slice.decided_at.unwrap_or(0), slice.id], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut placed = None;
    for id in waiting {
        let Some(s) = slices::get(conn, id)? else {
            continue;
        };
        match place_one(conn, &s, stale_secs)? {
            Some(node) if id == slice.id => placed = Some(node),
            Some(_) => {}
            None => return Ok(None),
        }
    }
    if placed.is_some() {
        queue::checkpoint(conn, job_id, "placed")?;
    }
    Ok(placed)
}

/// Places one slice, if some node has room for it.
fn place_one(conn: &Connection, slice: &Slice, stale_secs: i64) -> Result<Option<Node>> {
    let plan = slices::plan_limits(conn, slice.plan_id)?;
    // The filter and ranking in one query; node_info is read with SQLite's JSON functions.
    let mut stmt = conn.prepare_cached(&format!(
        "WITH held AS (
             SELECT s.node_id, sum(p.memory_mb) AS mb, count(*) AS n
             FROM slices s JOIN plans p ON p.id = s.plan_id
             WHERE s.node_id IS NOT NULL AND s.state IN {LIVE} GROUP BY s.node_id)
         SELECT n.id, json_extract(n.info, '$.subnet') AS subnet, coalesce(h.n, 0) AS count,
                json_extract(n.info, '$.memory_mb') - coalesce(h.mb, 0) AS free
         FROM nodes n LEFT JOIN held h ON h.node_id = n.id
         WHERE n.enabled AND NOT n.draining AND n.last_seen_at >= ?1
           AND (?2 IS NULL OR n.id = ?2)
           AND EXISTS (SELECT 1 FROM json_each(n.info, '$.templates') t
                       WHERE json_extract(t.value, '$.name') = ?3)
           AND free >= ?4
         ORDER BY free DESC, count ASC, n.id"
    ))?;
    let rows = stmt
        .query_map(
            params![
                now() - stale_secs,
                slice.wanted_node,
                slice.template,
                plan.memory_mb
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut best = None;
    for (node_id, subnet, count) in rows {
        let Some(subnet) = subnet.and_then(|s| Subnet::parse(&s).ok()) else {
            continue;
        };
        if (count as usize) < subnet.assignable().count() {
            if let Some(node) = nodes::by_id(conn, node_id)? {
                best = Some(Candidate { node, subnet });
                break;
            }
        }
    }
    let Some(c) = best else { return Ok(None) };
    let used: HashSet<String> = conn
        .prepare_cached("SELECT ip FROM slices WHERE node_id = ?1 AND ip IS NOT NULL")?
        .query_map([c.node.id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let ids: HashSet<i64> = conn
        .prepare_cached("SELECT veid FROM slices WHERE node_id = ?1 AND veid IS NOT NULL")?
        .query_map([c.node.id], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(ip) = c
        .subnet
        .assignable()
        .map(|a| a.to_string())
        .find(|a| !used.contains(a))
    else {
        return Ok(None);
    };
    let veid = (VeId::MIN as i64..)
        .find(|v| !ids.contains(v))
        .expect("a free id");
    conn.execute(
        "UPDATE slices SET node_id = ?2, veid = ?3, ip = ?4, state = 'provisioning', step = 'setting up the gateway login',
                           failure = '', updated_at = ?5 WHERE id = ?1",
        params![slice.id, c.node.id, veid, ip, now()],
    )?;
    slices::event(
        conn,
        slice.id,
        &format!(
            "Placed on node {} as container {veid} at {ip}.",
            c.node.name
        ),
    )?;
    if slice.state == State::Queued {
        queue::wake_waiting(conn)?; // the next in line may fit too
    }
    Ok(Some(c.node))
}
