//! Snapshots of a slice's disk: its owner (or staff) takes, restores and deletes them; a
//! `snapshots` job does it on the node and reads the node's list back. A plan says how many a
//! slice may keep. Restoring puts the whole disk back (files written since are lost), so it
//! is asked with the slice's name typed.

use rusqlite::Connection;
use serde::Serialize;

use crate::domain::FieldError;
use crate::error::{Error, Result};
use crate::ops::accounts::User;
use crate::ops::slices::{self, Slice, State};
use crate::records::jobs::{self, JobKind};
use crate::records::snapshots::{self as rows, Snapshot};

/// A slice and its snapshots, for its snapshots page.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotsView {
    pub slice: Slice,
    pub snapshots: Vec<Snapshot>,
    /// How many its plan lets it keep, and how many it keeps.
    pub allowed: u32,
    pub kept: u32,
    /// Something is being taken, restored or deleted (the page refreshes itself).
    pub busy: bool,
    /// Snapshots can be taken or restored now (running or stopped, not being moved).
    pub can_act: bool,
}

/// The slice if `who` may see it: its owner, or staff.
fn slice_for(conn: &Connection, who: &User, slice_id: i64) -> Result<Slice> {
    let slice = slices::get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.user_id != who.id && !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    Ok(slice)
}

pub fn view(conn: &Connection, who: &User, slice_id: i64) -> Result<SnapshotsView> {
    let slice = slice_for(conn, who, slice_id)?;
    let snapshots = rows::of_slice(conn, slice_id)?;
    let allowed = crate::records::plans::plan_snapshots(conn, slice.plan_id)?;
    let kept = rows::kept(conn, slice_id)?;
    let busy = snapshots
        .iter()
        .any(|s| matches!(s.state.as_str(), "taking" | "restoring" | "deleting"));
    let can_act = matches!(slice.state, State::Running | State::Stopped) && slice.veid.is_some();
    Ok(SnapshotsView {
        slice,
        snapshots,
        allowed,
        kept,
        busy,
        can_act,
    })
}

fn queue(conn: &Connection, slice: &Slice) -> Result<()> {
    jobs::enqueue(
        conn,
        JobKind::Snapshots,
        slice.id,
        Some(slice.user_id),
        slice.node_id,
    )?;
    Ok(())
}

/// The name a snapshot asked for at `at` gets: `sYYYYMMDD-HHMMSS`, with `-2`, `-3`... when
/// one of that second exists.
fn name_for(conn: &Connection, slice_id: i64, at: i64) -> Result<String> {
    let stamp: String = crate::clock::format_rfc3339(at)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    let base = format!("s{stamp}");
    let mut name = base.clone();
    let mut n = 2;
    while rows::get(conn, slice_id, &name)?.is_some() {
        name = format!("{base}-{n}");
        n += 1;
    }
    Ok(name)
}

/// Asks for a snapshot (with the student's note, at most 100 characters of plain text).
pub fn take(conn: &Connection, who: &User, slice_id: i64, note: &str, at: i64) -> Result<String> {
    let v = view(conn, who, slice_id)?;
    if !v.can_act {
        return Err(Error::Forbidden(format!(
            "A {} slice's disk cannot be snapshotted: only a running or stopped one's.",
            v.slice.state.as_str()
        )));
    }
    if v.allowed == 0 {
        return Err(Error::Forbidden(
            "This slice's plan keeps no snapshots: ask the lab staff.".into(),
        ));
    }
    if v.kept >= v.allowed {
        return Err(Error::Forbidden(format!(
            "It keeps {} snapshot{} already, the most its plan allows: delete one first.",
            v.kept,
            if v.kept == 1 { "" } else { "s" }
        )));
    }
    let note = note.trim();
    if note.chars().count() > 100 || note.chars().any(|c| c.is_control()) {
        return Err(FieldError::new("note", "At most 100 characters of plain text.").into());
    }
    let name = name_for(conn, slice_id, at)?;
    rows::insert(
        conn,
        &Snapshot {
            slice_id,
            name: name.clone(),
            note: note.to_string(),
            state: "taking".into(),
            size: None,
            taken_at: None,
            asked_by: Some(who.id),
            asked_at: at,
            error: String::new(),
        },
    )?;
    slices::event(
        conn,
        slice_id,
        &format!("Snapshot {name} asked by {}.", who.username),
    )?;
    queue(conn, &v.slice)?;
    Ok(name)
}

/// A snapshot that is ready, of a slice that can be acted on.
fn ready_one(
    conn: &Connection,
    who: &User,
    slice_id: i64,
    name: &str,
) -> Result<(SnapshotsView, Snapshot)> {
    let v = view(conn, who, slice_id)?;
    let s = v
        .snapshots
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or(Error::NotFound("snapshot"))?;
    if v.busy {
        return Err(Error::Forbidden(
            "A snapshot of it is being taken, restored or deleted: wait until that is done.".into(),
        ));
    }
    Ok((v, s))
}

/// Asks for the slice's disk to be put back as the snapshot has it, once `confirm` is the
/// slice's name.
pub fn restore(
    conn: &Connection,
    who: &User,
    slice_id: i64,
    name: &str,
    confirm: &str,
) -> Result<()> {
    let (v, s) = ready_one(conn, who, slice_id, name)?;
    if !v.can_act {
        return Err(Error::Forbidden(format!(
            "A {} slice cannot be restored.",
            v.slice.state.as_str()
        )));
    }
    if s.state != "ready" {
        return Err(Error::Forbidden(format!("Snapshot {name} is {}.", s.state)));
    }
    if confirm.trim() != v.slice.hostname {
        return Err(FieldError::new(
            "confirm",
            format!(
                "Type the slice's name, {}, to restore it.",
                v.slice.hostname
            ),
        )
        .into());
    }
    rows::set_state(conn, slice_id, name, "restoring", "")?;
    slices::event(
        conn,
        slice_id,
        &format!("Restore to snapshot {name} asked by {}.", who.username),
    )?;
    queue(conn, &v.slice)
}

/// Deletes a snapshot (a failed one's row just goes).
pub fn delete(conn: &Connection, who: &User, slice_id: i64, name: &str) -> Result<()> {
    let (v, s) = ready_one(conn, who, slice_id, name)?;
    if s.state == "failed" {
        return rows::remove(conn, slice_id, name);
    }
    rows::set_state(conn, slice_id, name, "deleting", "")?;
    slices::event(
        conn,
        slice_id,
        &format!("Snapshot {name} to be deleted, asked by {}.", who.username),
    )?;
    queue(conn, &v.slice)
}
