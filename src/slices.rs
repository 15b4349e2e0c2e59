//! Slices as the master knows them: requested by a student, decided by staff, then brought to
//! life and back by jobs (`src/jobs`). Every change of state is one transaction with its event
//! and, where work follows, its job.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::accounts::{audit, Actor, User};
use crate::domain::{DnsName, FieldError, Limits, Role, TemplateName};
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
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
}

const COLUMNS: &str =
    "id, user_id, state, step, failure, template, plan_id, course, purpose, node_id, \
    wanted_node, veid, ip, hostname, subdomain, requested_at, decided_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Slice> {
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

/// What messages about a slice show: the slice, its owner, its node.
pub fn mail_data(conn: &Connection, slice: &Slice) -> Result<serde_json::Value> {
    let owner =
        crate::accounts::users::by_id(conn, slice.user_id)?.ok_or(Error::NotFound("user"))?;
    let node = match slice.node_id {
        Some(id) => crate::nodes::by_id(conn, id)?.map(|n| n.name),
        None => None,
    };
    Ok(serde_json::json!({
        "slice": {
            "id": slice.id, "hostname": slice.hostname, "subdomain": slice.subdomain, "ip": slice.ip,
            "node": node, "template": slice.template, "course": slice.course, "purpose": slice.purpose,
            "username": owner.username,
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

/// Marks a slice failed with the reason shown to its owner.
pub fn fail(conn: &Connection, id: i64, reason: &str) -> Result<()> {
    conn.execute(
        "UPDATE slices SET state = 'failed', failure = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, reason, now()],
    )?;
    event(conn, id, &format!("Failed: {reason}"))
}

/// The limits of a plan.
pub fn plan_limits(conn: &Connection, plan_id: i64) -> Result<Limits> {
    let l = conn.query_row(
        "SELECT memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares FROM plans WHERE id = ?1",
        [plan_id],
        |r| {
            Ok(Limits {
                memory_mb: r.get(0)?,
                memory_limit_mb: r.get(1)?,
                processes: r.get(2)?,
                disk_mb: r.get(3)?,
                cpu_shares: r.get(4)?,
            })
        },
    )?;
    Ok(l.check()?)
}

pub fn default_plan(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT id FROM plans ORDER BY is_default DESC, id LIMIT 1",
        [],
        |r| r.get(0),
    )?)
}

/// Registers an OS template the master offers.
pub fn add_template(conn: &Connection, name: &TemplateName, description: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO templates (name, description, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        params![name.as_str(), description, now()],
    )?;
    Ok(())
}

/// What a student asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub template: TemplateName,
    pub plan_id: Option<i64>,
    pub course: String,
    pub purpose: String,
}

fn plain(field: &'static str, s: &str, max: usize) -> Result<String> {
    let s = s.trim();
    if s.chars().count() > max || s.chars().any(|c| c.is_control()) {
        return Err(
            FieldError::new(field, format!("At most {max} characters of plain text.")).into(),
        );
    }
    Ok(s.to_string())
}

/// A student's request: a new slice in state `requested`, waiting for staff.
pub fn request(conn: &Connection, user: &User, req: &Request) -> Result<Slice> {
    let user = &crate::accounts::users::by_id(conn, user.id)?.ok_or(Error::NotFound("user"))?;
    if user.email_verified_at.is_none() {
        return Err(Error::Forbidden(
            "Confirm your email address first: open the link we mailed you (or ask for a new one on your account page).".into(),
        ));
    }
    let known: bool = conn
        .query_row(
            "SELECT 1 FROM templates WHERE name = ?1",
            [req.template.as_str()],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !known {
        return Err(FieldError::new("template", "Choose one of the offered templates.").into());
    }
    let plan_id = match req.plan_id {
        Some(p) => p,
        None => default_plan(conn)?,
    };
    plan_limits(conn, plan_id)
        .map_err(|_| FieldError::new("plan", "Choose one of the offered plans."))?;
    let course = plain("course", &req.course, 100)?;
    let purpose = plain("purpose", &req.purpose, 1000)?;
    crate::quotas::check(conn, user.id, &course, plan_id, None, false, "You")?;
    // The host name and web subdomain are the username (a valid DNS label by construction).
    let name = DnsName::parse(&user.username.replace('_', "-"))?;
    let t = now();
    conn.execute(
        "INSERT INTO slices (user_id, state, template, plan_id, course, purpose, hostname, subdomain,
                             requested_at, updated_at)
         VALUES (?1, 'requested', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7)",
        params![user.id, req.template.as_str(), plan_id, course, purpose, name.as_str(), t],
    )?;
    let id = conn.last_insert_rowid();
    event(
        conn,
        id,
        "Requested; waiting for the lab staff to approve it.",
    )?;
    let slice = get(conn, id)?.ok_or(Error::NotFound("slice"))?;
    crate::mail::to_staff(
        conn,
        crate::mail::Kind::NewRequest,
        mail_data(conn, &slice)?,
        Some(id),
    )?;
    Ok(slice)
}

/// Staff approve a request: the slice is `approved` and its provisioning job is queued, in
/// the same transaction. `node` picks a node by hand.
pub fn approve(
    conn: &Connection,
    staff: &User,
    slice_id: i64,
    node: Option<i64>,
    ip: &str,
) -> Result<Slice> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff approve requests.".into()));
    }
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.state != State::Requested {
        return Err(Error::Forbidden(format!(
            "This slice is {}, not waiting for approval.",
            slice.state.as_str()
        )));
    }
    // The quota again, before anything is provisioned: other requests may have been approved
    // since this one was made.
    let owner =
        crate::accounts::users::by_id(conn, slice.user_id)?.ok_or(Error::NotFound("user"))?;
    crate::quotas::check(
        conn,
        slice.user_id,
        &slice.course,
        slice.plan_id,
        Some(slice_id),
        true,
        &owner.username,
    )
    .map_err(|e| match e {
        Error::Invalid(list) => Error::Forbidden(
            list.iter()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        e => e,
    })?;
    let t = now();
    conn.execute(
        "UPDATE slices SET state = 'approved', decided_at = ?2, decided_by = ?3, wanted_node = ?4, updated_at = ?2
         WHERE id = ?1",
        params![slice_id, t, staff.id, node],
    )?;
    event(conn, slice_id, &format!("Approved by {}.", staff.username))?;
    mail_owner(
        conn,
        slice_id,
        crate::mail::Kind::Approved,
        serde_json::json!({}),
    )?;
    jobs::enqueue(
        conn,
        JobKind::Provision,
        slice_id,
        Some(slice.user_id),
        node,
    )?;
    audit::record(
        conn,
        audit::Event::SliceApproved,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        &format!("slice {slice_id}"),
        "",
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Staff deny a request, with a reason the student sees.
pub fn deny(
    conn: &Connection,
    staff: &User,
    slice_id: i64,
    reason: &str,
    ip: &str,
) -> Result<Slice> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff decide requests.".into()));
    }
    let reason = plain("reason", reason, 500)?;
    if reason.is_empty() {
        return Err(FieldError::new("reason", "Say why; the student will read it.").into());
    }
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.state != State::Requested {
        return Err(Error::Forbidden(format!(
            "This slice is {}, not waiting for approval.",
            slice.state.as_str()
        )));
    }
    conn.execute(
        "UPDATE slices SET state = 'denied', failure = ?2, decided_at = ?3, decided_by = ?4, updated_at = ?3
         WHERE id = ?1",
        params![slice_id, reason, now(), staff.id],
    )?;
    event(
        conn,
        slice_id,
        &format!("Denied by {}: {reason}", staff.username),
    )?;
    mail_owner(
        conn,
        slice_id,
        crate::mail::Kind::Denied,
        serde_json::json!({ "reason": reason }),
    )?;
    audit::record(
        conn,
        audit::Event::SliceDenied,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        &format!("slice {slice_id}"),
        &reason,
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Asks for a running or stopped slice to be started, stopped, restarted or destroyed: the
/// job is queued in the same transaction. The owner or staff may.
pub fn act(conn: &Connection, who: &User, slice_id: i64, kind: JobKind) -> Result<Slice> {
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.user_id != who.id && !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    let allowed = match kind {
        JobKind::Start => matches!(slice.state, State::Stopped),
        JobKind::Stop | JobKind::Restart => matches!(slice.state, State::Running),
        JobKind::Destroy => matches!(
            slice.state,
            State::Running | State::Stopped | State::Failed | State::Queued | State::Approved
        ),
        _ => false,
    };
    if !allowed {
        return Err(Error::Forbidden(format!(
            "A {} slice cannot be {}.",
            slice.state.as_str(),
            kind.past_tense()
        )));
    }
    if kind == JobKind::Destroy {
        // Whatever was still to do for it is moot now.
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2
             WHERE slice_id = ?1 AND state = 'queued'",
            params![slice_id, now()],
        )?;
        set_state(
            conn,
            slice_id,
            State::Destroying,
            "",
            &format!("Destroy asked by {}.", who.username),
        )?;
    } else {
        event(
            conn,
            slice_id,
            &format!("{} asked by {}.", kind.noun(), who.username),
        )?;
    }
    jobs::enqueue(conn, kind, slice_id, Some(slice.user_id), slice.node_id)?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Staff change a running or stopped slice's plan; a job puts it in force on the node (live,
/// if the slice runs). Staff are not bound by the owner's quota of plans.
pub fn change_plan(conn: &Connection, who: &User, slice_id: i64, plan_id: i64) -> Result<Slice> {
    if !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if !matches!(slice.state, State::Running | State::Stopped) {
        return Err(Error::Forbidden(format!(
            "A {} slice's plan cannot be changed.",
            slice.state.as_str()
        )));
    }
    let name: String = conn
        .query_row("SELECT name FROM plans WHERE id = ?1", [plan_id], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| FieldError::new("plan", "Choose one of the plans."))?;
    if slice.plan_id == plan_id {
        return Err(FieldError::new("plan", format!("It has plan {name} already.")).into());
    }
    conn.execute(
        "UPDATE slices SET plan_id = ?2, updated_at = ?3 WHERE id = ?1",
        params![slice_id, plan_id, now()],
    )?;
    event(
        conn,
        slice_id,
        &format!("Plan changed to {name} by {}.", who.username),
    )?;
    jobs::enqueue(
        conn,
        JobKind::Limits,
        slice_id,
        Some(slice.user_id),
        slice.node_id,
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Staff move a slice to another node. Its container there is made anew from its template
/// (the files in the old one are not carried over: say so before asking), then the old one
/// is removed; the slice keeps its place at the head of the queue if the node is full.
pub fn move_to(conn: &Connection, who: &User, slice_id: i64, node_name: &str) -> Result<Slice> {
    if !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if !matches!(slice.state, State::Running | State::Stopped | State::Failed) {
        return Err(Error::Forbidden(format!(
            "A {} slice cannot be moved.",
            slice.state.as_str()
        )));
    }
    let node = crate::nodes::by_name(conn, node_name)?
        .filter(|n| n.enabled)
        .ok_or_else(|| FieldError::new("node", "Choose an enabled node."))?;
    if slice.node_id == Some(node.id) {
        return Err(FieldError::new("node", format!("It is on {} already.", node.name)).into());
    }
    conn.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2
         WHERE slice_id = ?1 AND state = 'queued'",
        params![slice_id, now()],
    )?;
    conn.execute(
        "UPDATE slices SET state = 'provisioning', step = 'moving: removing the old container',
                           failure = '', wanted_node = ?2, updated_at = ?3 WHERE id = ?1",
        params![slice_id, node.id, now()],
    )?;
    event(
        conn,
        slice_id,
        &format!(
            "Move to node {} asked by {}: a new container is made there from the template; files in the old one are not carried over.",
            node.name, who.username
        ),
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

/// How far a slice is on its way to running, in percent, while it is (None otherwise).
pub fn progress(s: &Slice) -> Option<u8> {
    match s.state {
        State::Approved | State::Queued => Some(10),
        State::Provisioning => Some(match s.step.as_str() {
            "moving: removing the old container" => 15,
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

/// A queued slice's place in the queue (1 = next).
pub fn queue_position(conn: &Connection, slice: &Slice) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM slices WHERE state = 'queued' AND (decided_at < ?1 OR (decided_at = ?1 AND id <= ?2))",
        params![slice.decided_at.unwrap_or(0), slice.id],
        |r| r.get(0),
    )?)
}

/// A template students may choose.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateChoice {
    pub name: String,
    pub description: String,
}

pub fn template_choices(conn: &Connection) -> Result<Vec<TemplateChoice>> {
    let mut stmt = conn.prepare_cached("SELECT name, description FROM templates ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TemplateChoice {
                name: r.get(0)?,
                description: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// A plan students may choose.
#[derive(Debug, Clone, Serialize)]
pub struct PlanChoice {
    pub id: i64,
    pub name: String,
    pub limits: Limits,
    pub is_default: bool,
}

pub fn plan_choices(conn: &Connection) -> Result<Vec<PlanChoice>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares, is_default
         FROM plans ORDER BY is_default DESC, memory_mb, name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PlanChoice {
                id: r.get(0)?,
                name: r.get(1)?,
                limits: Limits {
                    memory_mb: r.get(2)?,
                    memory_limit_mb: r.get(3)?,
                    processes: r.get(4)?,
                    disk_mb: r.get(5)?,
                    cpu_shares: r.get(6)?,
                },
                is_default: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// A slice with its owner's and node's names, for staff lists.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub slice: Slice,
    pub username: String,
    pub display_name: String,
    pub node: Option<String>,
}

/// Requests waiting for staff, oldest first; optionally one course, or older than some age.
pub fn waiting_requests(
    conn: &Connection,
    course: &str,
    older_than_secs: i64,
) -> Result<Vec<Listed>> {
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, NULL FROM slices s JOIN users u ON u.id = s.user_id
         WHERE s.state = 'requested' AND (?1 = '' OR s.course = ?1) AND s.requested_at <= ?2
         ORDER BY s.requested_at, s.id LIMIT 500"
    ))?;
    let rows = stmt
        .query_map(params![course, now() - older_than_secs], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn listed(r: &Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        slice: from_row(r)?,
        username: r.get(18)?,
        display_name: r.get(19)?,
        node: r.get(20)?,
    })
}

/// The courses named in waiting requests (for the filter).
pub fn waiting_courses(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT course FROM slices WHERE state = 'requested' AND course <> '' ORDER BY course",
    )?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Staff search: by username, node, address or state; a page and the total.
pub fn search(
    conn: &Connection,
    q: &str,
    state: Option<State>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Listed>, u64)> {
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let pat = crate::accounts::users::like_pattern(q.trim());
    let st = state.map(State::as_str);
    // Without search text, no row needs a LIKE and the count needs no join (an index does it).
    let searching = !q.trim().is_empty();
    let filter = if searching {
        "(u.username LIKE ?1 ESCAPE '\\' OR coalesce(n.name, '') LIKE ?1 ESCAPE '\\'
          OR coalesce(s.ip, '') LIKE ?1 ESCAPE '\\') AND (?2 IS NULL OR s.state = ?2)"
    } else {
        "?1 IS NOT NULL AND (?2 IS NULL OR s.state = ?2)"
    };
    let total: u64 = if searching {
        conn.query_row(
            &format!(
                "SELECT count(*) FROM slices s JOIN users u ON u.id = s.user_id LEFT JOIN nodes n ON n.id = s.node_id
                 WHERE {filter}"
            ),
            params![pat, st],
            |r| r.get(0),
        )?
    } else {
        conn.prepare_cached("SELECT count(*) FROM slices s WHERE (?1 IS NULL OR s.state = ?1)")?
            .query_row(params![st], |r| r.get(0))?
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols}, u.username, u.display_name, n.name FROM slices s JOIN users u ON u.id = s.user_id
         LEFT JOIN nodes n ON n.id = s.node_id WHERE {filter} ORDER BY s.id DESC LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(params![pat, st, limit, offset as i64], listed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}
