//! The queries placement is made of: who waits in line before a slice, which nodes have room
//! (filter and rank in one statement, `node_info` read with SQLite's JSON functions), what
//! addresses and container ids a node has given out, and the placing itself.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use crate::error::Result;
use crate::store::now;

/// Slices approved before the one decided at `decided_at` with id `slice_id` (itself
/// included) and not yet placed, first come first.
pub fn line_up_to(conn: &Connection, decided_at: i64, slice_id: i64) -> Result<Vec<i64>> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM slices WHERE state IN ('approved', 'queued') AND node_id IS NULL
               AND (decided_at < ?1 OR (decided_at = ?1 AND id <= ?2))
             ORDER BY decided_at, id",
        )?
        .query_map(params![decided_at, slice_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// (node id, subnet, live slices) of the nodes that can take a slice, best first: enabled, not
/// draining, heard from since `seen_since`, the wanted node if one is named, holding the
/// template, with `memory_mb` free; ranked by free memory, then fewest slices. What live slices
/// hold comes from `node_usage` (schema v21, kept by triggers), not from summing them.
pub fn nodes_with_room(
    conn: &Connection,
    seen_since: i64,
    wanted_node: Option<i64>,
    template: &str,
    memory_mb: u32,
) -> Result<Vec<(i64, Option<String>, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.id, json_extract(n.info, '$.subnet') AS subnet, coalesce(h.n, 0) AS count,
                json_extract(n.info, '$.memory_mb') - coalesce(h.mb, 0) AS free
         FROM nodes n LEFT JOIN node_usage h ON h.node_id = n.id
         WHERE n.enabled AND NOT n.draining AND n.last_seen_at >= ?1
           AND (?2 IS NULL OR n.id = ?2)
           AND EXISTS (SELECT 1 FROM json_each(n.info, '$.templates') t
                       WHERE json_extract(t.value, '$.name') = ?3)
           AND free >= ?4
         ORDER BY free DESC, count ASC, n.id",
    )?;
    let rows = stmt
        .query_map(params![seen_since, wanted_node, template, memory_mb], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The addresses and container ids a node has given out (an orphan container's too, until it
/// is removed, and both places of a move: a slice never gets a container or an address that is not free).
pub fn taken_on(conn: &Connection, node_id: i64) -> Result<(HashSet<String>, HashSet<i64>)> {
    let ips = conn
        .prepare_cached(
            "SELECT ip FROM slices WHERE node_id = ?1 AND ip IS NOT NULL
             UNION SELECT ip FROM orphans WHERE node_id = ?1 AND ip <> ''
             UNION SELECT from_ip FROM moves WHERE from_node = ?1 AND from_ip IS NOT NULL
             UNION SELECT to_ip FROM moves WHERE to_node = ?1 AND to_ip IS NOT NULL",
        )?
        .query_map([node_id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let ids = conn
        .prepare_cached(
            "SELECT veid FROM slices WHERE node_id = ?1 AND veid IS NOT NULL
             UNION SELECT veid FROM orphans WHERE node_id = ?1
             UNION SELECT from_veid FROM moves WHERE from_node = ?1 AND from_veid IS NOT NULL
             UNION SELECT to_veid FROM moves WHERE to_node = ?1 AND to_veid IS NOT NULL",
        )?
        .query_map([node_id], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((ips, ids))
}

/// Places a slice: its node, container id and address, provisioning from the gateway step.
pub fn place(conn: &Connection, slice_id: i64, node_id: i64, veid: i64, ip: &str) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET node_id = ?2, veid = ?3, ip = ?4, host_key = NULL, state = 'provisioning', step = 'setting up the gateway login',
                           failure = '', updated_at = ?5 WHERE id = ?1")?
            .execute(params![slice_id, node_id, veid, ip, now()],
    )?;
    Ok(())
}
