//! Where a slice goes: the first-come line, the filter and the ranking of nodes, and the
//! container id and address it gets there.

use rusqlite::Connection;

use crate::domain::{Subnet, VeId};
use crate::error::Result;
use crate::ops::slices::{self, Slice, State};
use crate::records::jobs as queue;
use crate::records::nodes::{self, Node};
use crate::records::placement as records;
use crate::store::now;

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
    let waiting = records::line_up_to(conn, slice.decided_at.unwrap_or(0), slice.id)?;
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
    let Some((node, veid, ip)) = find_place(
        conn,
        slice.wanted_node,
        &slice.template,
        plan.memory_mb,
        stale_secs,
    )?
    else {
        return Ok(None);
    };
    records::place(conn, slice.id, node.id, veid, &ip)?;
    slices::event(
        conn,
        slice.id,
        &format!("Placed on node {} as container {veid} at {ip}.", node.name),
    )?;
    if slice.state == State::Queued {
        queue::wake_waiting(conn)?; // the next in line may fit too
    }
    Ok(Some(node))
}

/// The best node with room for a container of `memory_mb` from `template` (the `wanted` one
/// only, if named), and a free container id and address there; None when none has room.
/// Filter: enabled, not draining, heard from in the last `stale_secs`, has the template, room
/// for the memory, a free address. Rank: most free memory, then fewest slices.
pub fn find_place(
    conn: &Connection,
    wanted: Option<i64>,
    template: &str,
    memory_mb: u32,
    stale_secs: i64,
) -> Result<Option<(Node, i64, String)>> {
    let rows = records::nodes_with_room(conn, now() - stale_secs, wanted, template, memory_mb)?;
    let mut best = None;
    for (node_id, subnet, count) in rows {
        let Some(subnet) = subnet.and_then(|s| Subnet::parse(&s).ok()) else {
            continue;
        };
        if (count as usize) < subnet.assignable().count() {
            if let Some(node) = nodes::by_id(conn, node_id)? {
                best = Some((node, subnet));
                break;
            }
        }
    }
    let Some((node, subnet)) = best else {
        return Ok(None);
    };
    let (used, ids) = records::taken_on(conn, node.id)?;
    let Some(ip) = subnet
        .assignable()
        .map(|a| a.to_string())
        .find(|a| !used.contains(a))
    else {
        return Ok(None);
    };
    let veid = (VeId::MIN as i64..)
        .find(|v| !ids.contains(v))
        .expect("a free id");
    Ok(Some((node, veid, ip)))
}
