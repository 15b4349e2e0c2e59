//! Archives of a slice's /home: asked for by its owner (or staff), packed on its node by an
//! `export` job, then downloaded through the master (`web::student::archive`).

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::accounts::User;
use crate::ops::slices::{self, Slice, State};
use crate::records::exports::{self as rows, Export};
use crate::records::jobs::{self, JobKind};

/// A slice and its archive, for the archive page.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveView {
    pub slice: Slice,
    pub export: Option<Export>,
    /// Whether a new archive can be asked for now (the slice is on a node, running or
    /// stopped, and none is being packed).
    pub can_ask: bool,
}

/// The slice if `who` may see its files: its owner, or staff.
fn slice_for(conn: &Connection, who: &User, slice_id: i64) -> Result<Slice> {
    let slice = slices::get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.user_id != who.id && !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    Ok(slice)
}

fn packable(s: &Slice) -> bool {
    matches!(s.state, State::Running | State::Stopped) && s.node_id.is_some() && s.veid.is_some()
}

pub fn view(conn: &Connection, who: &User, slice_id: i64) -> Result<ArchiveView> {
    let slice = slice_for(conn, who, slice_id)?;
    let export = rows::get(conn, slice_id)?.filter(|e| Some(e.node_id) == slice.node_id);
    let can_ask = packable(&slice) && export.as_ref().is_none_or(|e| e.state != "packing");
    Ok(ArchiveView {
        slice,
        export,
        can_ask,
    })
}

/// Asks for a new archive of the slice's /home: the export job is queued in the same
/// transaction. Refused while one is being packed, and for a slice with no container.
pub fn ask(conn: &Connection, who: &User, slice_id: i64, at: i64) -> Result<()> {
    let v = view(conn, who, slice_id)?;
    if !packable(&v.slice) {
        return Err(Error::Forbidden(format!(
            "A {} slice has no files to pack.",
            v.slice.state.as_str()
        )));
    }
    if !v.can_ask {
        return Err(Error::Forbidden(
            "Its archive is being packed already: this page shows when it is ready.".into(),
        ));
    }
    let (node_id, veid) = (
        v.slice.node_id.expect("packable"),
        v.slice.veid.expect("packable"),
    );
    rows::start(conn, slice_id, (node_id, veid), who.id, at)?;
    jobs::enqueue(
        conn,
        JobKind::Export,
        slice_id,
        Some(v.slice.user_id),
        Some(node_id),
    )?;
    Ok(())
}

/// The archive ready to download, and where it is: `(export, node)`.
pub fn ready(
    conn: &Connection,
    who: &User,
    slice_id: i64,
) -> Result<(Export, crate::records::nodes::Node)> {
    let v = view(conn, who, slice_id)?;
    let export = v
        .export
        .filter(|e| e.state == "ready")
        .ok_or(Error::NotFound("archive"))?;
    let node =
        crate::records::nodes::by_id(conn, export.node_id)?.ok_or(Error::NotFound("node"))?;
    Ok((export, node))
}
