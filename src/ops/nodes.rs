//! Slave hosts as the master enrols and retires them: each gets a slice subnet of its own
//! (given, or the next free one of the pool), never one that overlaps another node's; a node
//! goes only when no live slice is on it, unless staff say otherwise.

use rusqlite::Connection;

use crate::domain::{FieldError, NodeAddress, NodeName, Subnet};
use crate::error::{Error, Result};
use crate::records::nodes::{self, Node};

/// Every subnet nodes use: the one the master gave each, else what its agent reported.
fn taken(conn: &Connection) -> Result<Vec<(String, Subnet)>> {
    Ok(nodes::list(conn)?
        .into_iter()
        .filter_map(|n| {
            let s = n.subnet.clone().or_else(|| {
                n.info
                    .as_ref()
                    .and_then(|i| i.get("subnet"))
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })?;
            Subnet::parse(&s).ok().map(|s| (n.name, s))
        })
        .collect())
}

/// Registers a node with its subnet: `subnet` if given (refused when it overlaps another
/// node's), else the first /24 of `pool` that overlaps none.
pub fn enrol(
    conn: &Connection,
    name: &NodeName,
    address: &NodeAddress,
    subnet: Option<Subnet>,
    pool: &Subnet,
) -> Result<(Node, Subnet)> {
    let taken = taken(conn)?;
    let subnet = match subnet {
        Some(s) => {
            if let Some((other, o)) = taken.iter().find(|(_, t)| t.overlaps(&s)) {
                return Err(FieldError::new(
                    "subnet",
                    format!(
                        "{}/{} overlaps node {other}'s {}/{}: choose another, or leave it out \
                         to get the next free one.",
                        s.network(),
                        s.prefix(),
                        o.network(),
                        o.prefix()
                    ),
                )
                .into());
            }
            s
        }
        None => pool
            .split(24.max(pool.prefix()))
            .find(|s| !taken.iter().any(|(_, t)| t.overlaps(s)))
            .ok_or_else(|| {
                FieldError::new(
                    "subnet",
                    format!(
                        "every /24 of the pool {}/{} is taken: give --subnet, or a larger \
                         node_subnet_pool",
                        pool.network(),
                        pool.prefix()
                    ),
                )
            })?,
    };
    let node = nodes::add(conn, name, address)?;
    nodes::set_subnet(conn, node.id, &subnet)?;
    let node = nodes::by_id(conn, node.id)?.ok_or(Error::NotFound("node"))?;
    Ok((node, subnet))
}

/// Retires a node. Refused while live slices are on it unless `force` (their rows stay,
/// with no node, and are marked failed with the reason).
pub fn remove(conn: &Connection, name: &str, force: bool) -> Result<(Node, i64)> {
    let node = nodes::by_name(conn, name)?.ok_or(Error::NotFound("node"))?;
    let live = crate::records::slices::live_on_node(conn, node.id)?;
    if live > 0 && !force {
        return Err(Error::Forbidden(format!(
            "node {name} still has {live} live slice(s): move or destroy them first (or \
             --force, which leaves them failed)"
        )));
    }
    if live > 0 {
        for s in crate::records::slices::in_state_on_node(conn, node.id)? {
            crate::records::slices::fail(conn, s, &format!("its node {name} was removed"))?;
        }
    }
    nodes::remove(conn, node.id)?;
    Ok((node, live))
}

/// (node, its slice subnet, the host it is reached at) of every node whose subnet is known:
/// the gateway needs a route to each subnet through its node.
pub fn routes(conn: &Connection) -> Result<Vec<(String, Subnet, String)>> {
    let hosts: std::collections::HashMap<String, String> = nodes::list(conn)?
        .into_iter()
        .map(|n| {
            let host = n
                .address
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or(n.address.clone());
            (n.name, host)
        })
        .collect();
    Ok(taken(conn)?
        .into_iter()
        .map(|(name, subnet)| {
            let host = hosts.get(&name).cloned().unwrap_or_default();
            (name, subnet, host)
        })
        .collect())
}

/// Empties a node before it is removed: no new slices go to it (it drains), and each of its
/// running or stopped slices is moved (its /home with it) wherever placement finds room. Slices still
/// being set up or destroyed are left to finish. Returns (moved, left).
pub fn move_off(conn: &Connection, name: &str) -> Result<(usize, usize)> {
    let node = nodes::by_name(conn, name)?.ok_or(Error::NotFound("node"))?;
    nodes::set_flag(conn, name, "draining", 1)?;
    let (mut moved, mut left) = (0, 0);
    for id in crate::records::slices::in_state_on_node(conn, node.id)? {
        let Some(s) = crate::records::slices::get(conn, id)? else {
            continue;
        };
        if !matches!(
            s.state,
            crate::records::slices::State::Running | crate::records::slices::State::Stopped
        ) {
            left += 1;
            continue;
        }
        crate::ops::slices::begin_move(conn, None, id, crate::ops::slices::Target::Anywhere)?;
        moved += 1;
    }
    Ok((moved, left))
}

/// Staff ask for an orphan container (one no slice holds) to be removed from its node, having
/// typed its id to confirm: a job destroys it there.
pub fn remove_orphan(
    conn: &Connection,
    staff: &crate::records::users::User,
    node: &str,
    veid: i64,
    confirm: &str,
    ip: &str,
) -> Result<()> {
    use crate::ops::accounts::{audit, Actor};
    if !staff.role.is_staff() {
        return Err(Error::NotFound("orphan"));
    }
    let node = nodes::by_name(conn, node)?.ok_or(Error::NotFound("node"))?;
    let orphan =
        crate::records::orphans::get(conn, node.id, veid)?.ok_or(Error::NotFound("orphan"))?;
    if confirm.trim() != orphan.veid.to_string() {
        return Err(Error::Invalid(vec![FieldError::new(
            "confirm",
            format!("Type {} to confirm.", orphan.veid),
        )]));
    }
    crate::records::orphans::ask_removal(conn, node.id, veid, staff.id)?;
    crate::records::jobs::enqueue_for_node(
        conn,
        crate::records::jobs::JobKind::RemoveOrphans,
        node.id,
        crate::store::now(),
    )?;
    audit::record(
        conn,
        audit::Event::NodeChanged,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Node(&node.name),
        &format!("asked to remove orphan container ve{veid}"),
    )
}
