//! The `slices` and `slice_events` tables: a slice's row and state, and what happened to it.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

/// Where a slice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Requested,
    Approved,
    Queued,
    Provisioning,
    Running,
    Stopped,
    Failed,
    Denied,
    Destroying,
    Destroyed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Approved => "approved",
            State::Queued => "queued",
            State::Provisioning => "provisioning",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Failed => "failed",
            State::Denied => "denied",
            State::Destroying => "destroying",
            State::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Requested,
            State::Approved,
            State::Queued,
            State::Provisioning,
            State::Running,
            State::Stopped,
            State::Failed,
            State::Denied,
            State::Destroying,
            State::Destroyed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub id: i64,
    pub user_id: i64,
    pub state: State,
    pub step: String,
    pub failure: String,
    pub template: String,
    pub plan_id: i64,
    pub course: String,
    pub purpose: String,
    pub node_id: Option<i64>,
    pub wanted_node: Option<i64>,
    pub veid: Option<i64>,
    pub ip: Option<String>,
    pub hostname: String,
    pub subdomain: String,
    pub requested_at: i64,
    pub decided_at: Option<i64>,
    pub updated_at: i64,
    /// The end staff gave this slice itself (an approved extension sets it too); when None it
    /// ends with its course, if its course has an end (`ops::term::ends_at`).
    pub expires_at: Option<i64>,
}

pub(crate) const COLUMNS: &str =
    "id, user_id, state, step, failure, template, plan_id, course, purpose, node_id, \
    wanted_node, veid, ip, hostname, subdomain, requested_at, decided_at, updated_at, expires_at";

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<Slice> {
    let state: String = r.get(2)?;
    Ok(Slice {
        id: r.get(0)?,
        user_id: r.get(1)?,
        state: State::parse(&state).unwrap_or(State::Failed),
        step: r.get(3)?,
        failure: r.get(4)?,
        template: r.get(5)?,
        plan_id: r.get(6)?,
        course: r.get(7)?,
        purpose: r.get(8)?,
        node_id: r.get(9)?,
        wanted_node: r.get(10)?,
        veid: r.get(11)?,
        ip: r.get(12)?,
        hostname: r.get(13)?,
        subdomain: r.get(14)?,
        requested_at: r.get(15)?,
        decided_at: r.get(16)?,
        updated_at: r.get(17)?,
        expires_at: r.get(18)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Slice>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM slices WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn for_user(conn: &Connection, user_id: i64) -> Result<Vec<Slice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM slices WHERE user_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt
        .query_map([user_id], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn in_state(conn: &Connection, state: State) -> Result<Vec<Slice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM slices WHERE state = ?1 ORDER BY requested_at, id"
    ))?;
    let rows = stmt
        .query_map([state.as_str()], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Notes something that happened to a slice (shown to its owner and staff).
pub fn event(conn: &Connection, slice_id: i64, message: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO slice_events (slice_id, at, message) VALUES (?1, ?2, ?3)")?
        .execute(params![slice_id, now(), message])?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub message: String,
}

pub fn events(conn: &Connection, slice_id: i64, limit: u32) -> Result<Vec<Event>> {
    // A walk down the slice's index that stops at the last one wanted (a bound limit is not
    // planned again at each run: the store's connections keep plans stable).
    let mut stmt = conn.prepare_cached(
        "SELECT at, message FROM slice_events WHERE slice_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![slice_id, limit], |r| {
            Ok(Event {
                at: r.get(0)?,
                message: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many events a card shows.
pub const EVENTS_SHOWN: u32 = 5;

/// The newest [`EVENTS_SHOWN`] events of a slice, newest first, as its card shows them.
/// (One statement for all of a user's slices, a correlated subquery with a sort, cost three
/// times as much as five of these.)
pub fn recent_events(conn: &Connection, slice_id: i64) -> Result<Vec<Event>> {
    events(conn, slice_id, EVENTS_SHOWN)
}

/// Moves a slice to a state (and step), noting why.
pub fn set_state(
    conn: &Connection,
    id: i64,
    state: State,
    step: &str,
    message: &str,
) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET state = ?2, step = ?3, updated_at = ?4 WHERE id = ?1")?
        .execute(params![id, state.as_str(), step, now()])?;
    if !message.is_empty() {
        event(conn, id, message)?;
    }
    Ok(())
}

/// A slice with a container on a node, as the reconcile compares it.
#[derive(Debug, Clone)]
pub struct OnNode {
    pub id: i64,
    pub veid: i64,
    pub state: String,
    pub user_id: i64,
    /// When the slice's row last changed (Unix seconds).
    pub updated_at: i64,
}

/// Every slice that holds a container id on the node (all but destroyed ones).
pub fn on_node(conn: &Connection, node_id: i64) -> Result<Vec<OnNode>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, veid, state, user_id, updated_at FROM slices
         WHERE node_id = ?1 AND veid IS NOT NULL AND state <> 'destroyed'",
    )?;
    let rows = stmt
        .query_map([node_id], |r| {
            Ok(OnNode {
                id: r.get(0)?,
                veid: r.get(1)?,
                state: r.get(2)?,
                user_id: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Frees a failed slice's place on its node (its container is gone): node, container id and
/// address, only if it is still failed there (a retry may have placed it anew). Whether it did.
pub fn release_place(conn: &Connection, id: i64, node_id: i64, veid: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE slices SET node_id = NULL, veid = NULL, ip = NULL, updated_at = ?4
         WHERE id = ?1 AND state = 'failed' AND node_id = ?2 AND veid = ?3",
        )?
        .execute(params![id, node_id, veid, now()])?
        == 1)
}

/// Marks a slice failed with the reason shown to its owner.
pub fn fail(conn: &Connection, id: i64, reason: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE slices SET state = 'failed', failure = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, reason, now()])?;
    event(conn, id, &format!("Failed: {reason}"))
}

/// A queued slice's place in the queue (1 = next).
pub fn queue_position(conn: &Connection, slice: &Slice) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM slices WHERE state = 'queued' AND (decided_at < ?1 OR (decided_at = ?1 AND id <= ?2))")?
            .query_row(params![slice.decided_at.unwrap_or(0), slice.id],
        |r| r.get(0),
    )?)
}

/// How many live slices (holding their node's resources) a node has.
pub fn live_on_node(conn: &Connection, node_id: i64) -> Result<i64> {
    Ok(conn.prepare_cached("SELECT count(*) FROM slices WHERE node_id = ?1 AND state IN ('provisioning', 'running', 'stopped', 'destroying')")?
            .query_row([node_id],
        |r| r.get(0),
    )?)
}

/// The step a slice's job is on.
pub fn set_step(conn: &Connection, id: i64, step: &str) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET step = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, step, now()])?;
    Ok(())
}

/// A destroyed slice gives back its container id and address.
pub fn set_destroyed(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET veid = NULL, ip = NULL, state = 'destroyed', step = '', updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now()],
    )?;
    Ok(())
}

/// A slice leaves its node to be placed anew (a move): no node, id or address, approved.
pub fn unplace(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE slices SET node_id = NULL, veid = NULL, ip = NULL, state = 'approved',
                           step = '', updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now()])?;
    Ok(())
}

/// The running slice with this container id on a node.
pub fn running_on(conn: &Connection, node_id: i64, veid: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM slices WHERE node_id = ?1 AND veid = ?2 AND state = 'running'",
        )?
        .query_row(params![node_id, veid], |r| r.get(0))
        .optional()?)
}

/// A student's request: a new row in state `requested`; its id.
pub fn insert_request(
    conn: &Connection,
    user_id: i64,
    template: &crate::domain::TemplateName,
    plan_id: i64,
    course: &str,
    purpose: &str,
    name: &crate::domain::DnsName,
) -> Result<i64> {
    conn.prepare_cached("INSERT INTO slices (user_id, state, template, plan_id, course, purpose, hostname, subdomain,
                             requested_at, updated_at)
         VALUES (?1, 'requested', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7)")?
            .execute(params![user_id, template.as_str(), plan_id, course, purpose, name.as_str(), now()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Whether a slice that is not gone holds `name` (names are unique among them).
pub fn name_taken(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM slices WHERE subdomain = ?1 AND state NOT IN ('denied', 'destroyed')",
        )?
        .exists([name])?)
}

pub fn set_approved(conn: &Connection, id: i64, staff_id: i64, node: Option<i64>) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET state = 'approved', decided_at = ?2, decided_by = ?3, wanted_node = ?4, updated_at = ?2
         WHERE id = ?1")?
            .execute(params![id, now(), staff_id, node],
    )?;
    Ok(())
}

/// A failed slice is taken up again: provisioning where it was placed (the step after the
/// gateway's, its container made anew), or approved, to be placed afresh, if it holds no
/// place. Whether it was failed.
pub fn retake(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn.prepare_cached("UPDATE slices SET state = CASE WHEN veid IS NULL THEN 'approved' ELSE 'provisioning' END,
                           step = CASE WHEN veid IS NULL THEN '' ELSE 'setting up the gateway login' END,
                           failure = '', host_key = NULL, updated_at = ?2
         WHERE id = ?1 AND state = 'failed'")?
            .execute(params![id, now()],
    )? == 1)
}

pub fn set_denied(conn: &Connection, id: i64, staff_id: i64, reason: &str) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET state = 'denied', failure = ?2, decided_at = ?3, decided_by = ?4, updated_at = ?3
         WHERE id = ?1")?
            .execute(params![id, reason, now(), staff_id],
    )?;
    Ok(())
}

pub fn set_plan(conn: &Connection, id: i64, plan_id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET plan_id = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, plan_id, now()])?;
    Ok(())
}

/// A moved slice takes its new place (and template): its container runs there with the old
/// /home in it.
pub fn take_place(
    conn: &Connection,
    id: i64,
    (node_id, veid, ip): (i64, i64, &str),
    template: &str,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE slices SET node_id = ?2, veid = ?3, ip = ?4, template = ?5, host_key = NULL,
                           updated_at = ?6 WHERE id = ?1",
    )?
    .execute(params![id, node_id, veid, ip, template, now()])?;
    Ok(())
}

/// The live slices on a node (provisioning, running, stopped, destroying), by id.
pub fn in_state_on_node(conn: &Connection, node_id: i64) -> Result<Vec<i64>> {
    let ids = conn
        .prepare_cached(
            "SELECT id FROM slices WHERE node_id = ?1
               AND state IN ('provisioning', 'running', 'stopped', 'destroying')",
        )?
        .query_map([node_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}
