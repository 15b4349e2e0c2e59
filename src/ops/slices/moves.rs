//! A slice made anew while its old container stays as it was: moved to another node by staff
//! (or off a node being removed), or reinstalled from a template by its owner or staff. The
//! new container is made and started, the old /home is packed, carried over the links and
//! checked by SHA-256 on the way in; only then does the slice take its new place and the old
//! container go. A move that fails part-way removes what it made and leaves the slice as it
//! was. The work is the `move` job (`jobs::kinds::moving`); the row is `records::moves`.

use rusqlite::Connection;

use super::*;
use crate::domain::{FieldError, TemplateName};
use crate::error::{Error, Result};
use crate::ops::accounts::User;
use crate::records::jobs::{self, JobKind};
use crate::records::moves::{self, Move};

/// Where a slice goes.
pub enum Target<'a> {
    /// To this node (staff).
    Node(&'a str),
    /// Off its node, which is draining, to wherever there is room.
    Anywhere,
    /// Anew on its own node from this template (its own, or another offered one).
    Reinstall {
        template: &'a TemplateName,
        keep_home: bool,
    },
}

/// The step a slice shows while it moves, by how far the move is.
pub const STEPS: [&str; 6] = [
    "moving: waiting for a place",
    "moving: making the new container",
    "moving: packing /home",
    "moving: carrying /home over",
    "moving: switching over",
    "moving: removing the old container",
];

/// Begins moving (or reinstalling) a slice: checks who and what, records the move with the
/// slice's current place, and queues its job. `who` is None for the system (a node being
/// emptied).
pub fn begin_move(
    conn: &Connection,
    who: Option<&User>,
    slice_id: i64,
    target: Target<'_>,
) -> Result<Slice> {
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    let staff = who.is_none_or(|u| u.role.is_staff());
    let owner = who.is_some_and(|u| u.id == slice.user_id);
    let reinstall = matches!(target, Target::Reinstall { .. });
    if !(staff || (owner && reinstall)) {
        return Err(Error::NotFound("slice"));
    }
    let allowed = if staff {
        matches!(slice.state, State::Running | State::Stopped | State::Failed)
    } else {
        matches!(slice.state, State::Running | State::Stopped)
    };
    if !allowed {
        let what = if reinstall { "reinstalled" } else { "moved" };
        return Err(Error::Forbidden(format!(
            "A {} slice cannot be {what}.",
            slice.state.as_str()
        )));
    }
    if moves::get(conn, slice_id)?.is_some() {
        return Err(Error::Forbidden(
            "It is being moved or reinstalled already: follow it on its page.".into(),
        ));
    }
    let from = match slice.node_id {
        Some(id) => crate::records::nodes::by_id(conn, id)?,
        None => None,
    };
    let by = who.map_or("Slices".to_string(), |u| u.username.clone());
    let (wanted, template, keep_home, what) = match target {
        Target::Node(name) => {
            let node = crate::records::nodes::by_name(conn, name)?
                .filter(|n| n.enabled)
                .ok_or_else(|| FieldError::new("node", "Choose an enabled node."))?;
            if slice.node_id == Some(node.id) {
                return Err(
                    FieldError::new("node", format!("It is on {} already.", node.name)).into(),
                );
            }
            (
                Some(node.id),
                slice.template.clone(),
                true,
                format!("Move to node {} asked by {by}", node.name),
            )
        }
        Target::Anywhere => (
            None,
            slice.template.clone(),
            true,
            format!(
                "Moving off node {}, which is being emptied (asked by {by})",
                from.as_ref().map_or("?", |n| n.name.as_str())
            ),
        ),
        Target::Reinstall {
            template,
            keep_home,
        } => {
            let same = template.as_str() == slice.template;
            if !same && !crate::records::templates::offered(conn, template)? {
                return Err(
                    FieldError::new("template", "Choose one of the offered templates.").into(),
                );
            }
            let Some(node) = &from else {
                return Err(Error::Forbidden(
                    "It has no place on a node to be reinstalled on: staff can make it again."
                        .into(),
                ));
            };
            (
                Some(node.id),
                template.as_str().to_string(),
                keep_home,
                format!("Reinstall from template {template} asked by {by}"),
            )
        }
    };
    // The old /home can be carried only from a container that is there and answers.
    let can_carry = slice.state != State::Failed && from.as_ref().is_some_and(|n| n.enabled);
    let keep_home = keep_home && can_carry;
    let files = if keep_home {
        "/home is carried over (checked by SHA-256); the rest of the old container and its \
         snapshots are not. It stays as it was until the new one runs, then it is removed."
    } else if can_carry {
        "/home is not kept: the new container starts empty. The old one stays as it was \
         until the new one runs, then it is removed."
    } else {
        "its files cannot be carried over (its container is lost or its node out of service)."
    };
    jobs::cancel_queued_for(conn, slice_id)?;
    moves::insert(
        conn,
        &Move {
            slice_id,
            kind: if reinstall { "reinstall" } else { "move" }.into(),
            from_node: slice.node_id,
            from_veid: slice.veid,
            from_ip: slice.ip.clone(),
            wanted,
            to_node: None,
            to_veid: None,
            to_ip: None,
            template,
            was: slice.state.as_str().into(),
            keep_home,
            sha256: None,
            size: None,
            switched: false,
            asked_by: who.map(|u| u.id),
            asked_at: crate::store::now(),
        },
    )?;
    set_state(
        conn,
        slice_id,
        State::Provisioning,
        STEPS[0],
        &format!("{what}: a new container is made; {files}"),
    )?;
    jobs::enqueue(
        conn,
        JobKind::Move,
        slice_id,
        Some(slice.user_id),
        slice.node_id,
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}
