//! Slices as the master knows them: requested by a student, decided by staff, then brought to
//! life and back by jobs (`src/jobs`). Every change of state is one transaction with its event
//! and, where work follows, its job.

mod actions;
mod catalog;
mod moves;

/// The rows: `records::slices` (state, events, queue place) and the staff lists.
pub use crate::records::slice_lists::*;
pub use crate::records::slices::*;
pub use actions::*;
pub use catalog::*;
pub use moves::*;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// What messages about a slice show: the slice, its owner, its node.
pub fn mail_data(conn: &Connection, slice: &Slice) -> Result<serde_json::Value> {
    let owner =
        crate::ops::accounts::users::by_id(conn, slice.user_id)?.ok_or(Error::NotFound("user"))?;
    let node = match slice.node_id {
        Some(id) => crate::records::nodes::by_id(conn, id)?,
        None => None,
    };
    let simulated = node.as_ref().is_some_and(|n| n.simulated());
    let node = node.map(|n| n.name);
    Ok(serde_json::json!({
        "slice": {
            "id": slice.id, "hostname": slice.hostname, "subdomain": slice.subdomain, "ip": slice.ip,
            "node": node, "template": slice.template, "course": slice.course, "purpose": slice.purpose,
            "username": owner.username, "simulated": simulated,
        },
        "student": {"username": owner.username, "display_name": owner.display_name},
    }))
}

/// Mails a slice's owner about it.
pub fn mail_owner(
    conn: &Connection,
    slice_id: i64,
    kind: crate::mail::Kind,
    extra: serde_json::Value,
) -> Result<()> {
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    let mut data = mail_data(conn, &slice)?;
    if let (serde_json::Value::Object(d), serde_json::Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    crate::mail::to_user(conn, kind, slice.user_id, data, Some(slice_id))?;
    Ok(())
}

/// How far a slice is on its way to running, in percent, while it is (None otherwise).
pub fn progress(s: &Slice) -> Option<u8> {
    match s.state {
        State::Approved | State::Queued => Some(10),
        State::Provisioning => Some(match s.step.as_str() {
            s if s.starts_with("moving: ") => {
                let at = moves::STEPS.iter().position(|m| *m == s).unwrap_or(0);
                15 + 80 * at as u8 / moves::STEPS.len() as u8
            }
            "waiting for a place" => 20,
            "setting up the gateway login" => 30,
            "creating the container" => 50,
            "starting" => 75,
            "finishing" => 90,
            _ => 40,
        }),
        _ => None,
    }
}
