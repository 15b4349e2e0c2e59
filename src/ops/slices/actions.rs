//! What students and staff do to a slice: request, approve, deny, start/stop/restart/destroy,
//! change its plan, move it, make a failed or lost one again. Each is one transaction with its event, audit row, mail and job.

use rusqlite::Connection;

use super::*;
use crate::domain::{DnsName, FieldError, Role, TemplateName};
use crate::error::{Error, Result};
use crate::ops::accounts::{audit, Actor, User};
use crate::records::jobs::{self, JobKind};
use crate::records::slices as rows;

/// What a student asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub template: TemplateName,
    pub plan_id: Option<i64>,
    pub course: String,
    pub purpose: String,
    /// The student's word for it (empty: chosen for them). Its login and web name is
    /// `USER` or `USER-WORD`; see [`slice_name`].
    pub name: String,
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
    let user =
        &crate::ops::accounts::users::by_id(conn, user.id)?.ok_or(Error::NotFound("user"))?;
    if user.email_verified_at.is_none() {
        return Err(Error::Forbidden(
            "Confirm your email address first: open the link we mailed you (or ask for a new one on your account page).".into(),
        ));
    }
    let mut problems = crate::error::Problems::default();
    if !crate::records::templates::offered(conn, &req.template)? {
        problems.push(FieldError::new(
            "template",
            "Choose one of the offered templates.",
        ));
    }
    let plan_id = match req.plan_id {
        Some(p) => p,
        None => default_plan(conn)?,
    };
    if plan_limits(conn, plan_id).is_err() {
        problems.push(FieldError::new("plan", "Choose one of the offered plans."));
    }
    let course = problems
        .check(plain("course", &req.course, 100))
        .and_then(|c| {
            problems.check(crate::ops::term::course_for_request(
                conn,
                &c,
                crate::store::now(),
            ))
        });
    let plan_id = match (req.plan_id, &course) {
        (None, Some((_, Some(course_plan)))) => *course_plan,
        _ => plan_id,
    };
    let course = course.map(|(c, _)| c);
    let purpose = problems.check(plain("purpose", &req.purpose, 1000));
    let name = problems.check(slice_name(conn, &user.username, &req.name));
    problems.finish()?;
    let (Some(course), Some(purpose), Some(name)) = (course, purpose, name) else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a checked field had no value"
        )));
    };
    crate::ops::quotas::check(conn, user.id, &course, plan_id, None, false, "You")?;
    let id = rows::insert_request(
        conn,
        user.id,
        &req.template,
        plan_id,
        &course,
        &purpose,
        &name,
    )?;
    // On the course's roster: the staff member who listed them approved it in advance.
    if let Some(staff) = crate::ops::rosters::approver(conn, &course, user)? {
        event(conn, id, "Requested.")?;
        return approve_because(
            conn,
            &staff,
            id,
            None,
            "",
            &format!("{} is on the roster of {course}", user.username),
        );
    }
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

/// The name a new slice of `username` gets: its host name, its web name (`NAME.<domain>`) and
/// its login name at the built-in gateway. Every live slice has a name of its own. The first
/// is the username (with `-` for `_`, a DNS label by construction); another is `USER-WORD`,
/// with the student's word, or the first free number when they gave none.
pub fn slice_name(conn: &Connection, username: &str, wanted: &str) -> Result<DnsName> {
    let base = username.replace('_', "-");
    let err = |m: String| Error::from(FieldError::new("name", m));
    let wanted = wanted.trim();
    if !wanted.is_empty() {
        let word_ok = wanted.len() <= 20
            && !wanted.starts_with('-')
            && !wanted.ends_with('-')
            && wanted
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !word_ok {
            return Err(err(
                "A name has 1 to 20 lowercase letters, digits and `-` (not first or last), such as `web` or `db2`.".into(),
            ));
        }
        let full = if wanted == base {
            base.clone()
        } else {
            format!("{base}-{wanted}")
        };
        let name = DnsName::parse(&full).map_err(|_| {
            err(format!(
                "`{full}` is too long for a name: choose a shorter word."
            ))
        })?;
        if rows::name_taken(conn, name.as_str())? {
            return Err(err(format!("`{full}` is taken: choose another word.")));
        }
        return Ok(name);
    }
    for n in 1..1000 {
        let full = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let name = DnsName::parse(&full)
            .map_err(|_| err("Your username makes no host name: give the slice a name.".into()))?;
        if !rows::name_taken(conn, name.as_str())? {
            return Ok(name);
        }
    }
    Err(err("Give the slice a name of your own.".into()))
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
    approve_because(conn, staff, slice_id, node, ip, "")
}

/// [`approve`], saying why when staff approved it in advance (`why`: a roster).
fn approve_because(
    conn: &Connection,
    staff: &User,
    slice_id: i64,
    node: Option<i64>,
    ip: &str,
    why: &str,
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
        crate::ops::accounts::users::by_id(conn, slice.user_id)?.ok_or(Error::NotFound("user"))?;
    crate::ops::quotas::check(
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
    rows::set_approved(conn, slice_id, staff.id, node)?;
    if why.is_empty() {
        event(conn, slice_id, &format!("Approved by {}.", staff.username))?;
    } else {
        event(
            conn,
            slice_id,
            &format!("Approved in advance by {}: {why}.", staff.username),
        )?;
    }
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
        crate::records::audit::Subject::Slice(slice_id),
        why,
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
    rows::set_denied(conn, slice_id, staff.id, &reason)?;
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
        crate::records::audit::Subject::Slice(slice_id),
        &reason,
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Asks for a running or stopped slice to be started, stopped, restarted or destroyed: the
/// job is queued in the same transaction. The owner or staff may.
pub fn act(conn: &Connection, who: &User, slice_id: i64, kind: JobKind, ip: &str) -> Result<Slice> {
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
    if kind == JobKind::Start
        && !who.role.is_staff()
        && crate::ops::term::ended(conn, &slice, crate::store::now())?
    {
        return Err(Error::Forbidden(
            "This slice's end has come: ask for more time first (the link is on its card).".into(),
        ));
    }
    if kind == JobKind::Destroy {
        begin_destroy(conn, &slice, &format!("Destroy asked by {}.", who.username))?;
    } else {
        event(
            conn,
            slice_id,
            &format!("{} asked by {}.", kind.noun(), who.username),
        )?;
        jobs::enqueue(conn, kind, slice_id, Some(slice.user_id), slice.node_id)?;
    }
    let event = match kind {
        JobKind::Start => audit::Event::SliceStart,
        JobKind::Stop => audit::Event::SliceStop,
        JobKind::Restart => audit::Event::SliceRestart,
        _ => audit::Event::SliceDestroy,
    };
    audit::record(
        conn,
        event,
        &Actor {
            user_id: Some(who.id),
            ip,
        },
        audit::Subject::Slice(slice_id),
        slice.state.as_str(),
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

/// Starts destroying a slice, whoever or whatever asked (`message` says who): whatever was
/// still to do for it is cancelled, it is `destroying` and its destroy job is queued.
pub fn begin_destroy(conn: &Connection, slice: &Slice, message: &str) -> Result<()> {
    jobs::cancel_queued_for(conn, slice.id)?;
    set_state(conn, slice.id, State::Destroying, "", message)?;
    jobs::enqueue(
        conn,
        JobKind::Destroy,
        slice.id,
        Some(slice.user_id),
        slice.node_id,
    )?;
    Ok(())
}

/// Its owner withdraws a request staff have not decided yet, or puts a denied one away: it
/// leaves the dashboard (and the staff's queue) for good, with its name free again.
pub fn withdraw(conn: &Connection, who: &User, slice_id: i64, ip: &str) -> Result<Slice> {
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.user_id != who.id {
        return Err(Error::NotFound("slice"));
    }
    let said = match slice.state {
        State::Requested => format!("Withdrawn by {} before staff decided.", who.username),
        State::Denied => format!("Put away by {}.", who.username),
        other => {
            return Err(Error::Forbidden(format!(
                "Only a request waiting for staff, or a denied one, can be withdrawn; this slice is {}.",
                other.as_str()
            )))
        }
    };
    rows::set_destroyed(conn, slice_id)?;
    event(conn, slice_id, &said)?;
    audit::record(
        conn,
        audit::Event::SliceWithdrawn,
        &Actor {
            user_id: Some(who.id),
            ip,
        },
        audit::Subject::Slice(slice_id),
        slice.state.as_str(),
    )?;
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
    let name = crate::records::plans::name_of(conn, plan_id)?
        .ok_or_else(|| FieldError::new("plan", "Choose one of the plans."))?;
    if slice.plan_id == plan_id {
        return Err(FieldError::new("plan", format!("It has plan {name} already.")).into());
    }
    rows::set_plan(conn, slice_id, plan_id)?;
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

/// Staff move a slice to another node: see `moves::begin_move`.
pub fn move_to(conn: &Connection, who: &User, slice_id: i64, node_name: &str) -> Result<Slice> {
    if !who.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    super::begin_move(conn, Some(who), slice_id, super::Target::Node(node_name))
}

/// Staff make a failed slice again: one whose provision failed for good, or whose container
/// was found gone from its node (lost). It is provisioned anew where it was placed (same
/// address, a new container from its template: its files are not brought back), or placed
/// afresh if it holds no place. Not while a job for it is still under way (its clean-up).
pub fn remake(conn: &Connection, staff: &User, slice_id: i64, ip: &str) -> Result<Slice> {
    if !staff.role.is_staff() {
        return Err(Error::NotFound("slice"));
    }
    let slice = get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.state != State::Failed {
        return Err(Error::Forbidden(format!(
            "A {} slice is not made again: only a failed one is.",
            slice.state.as_str()
        )));
    }
    if jobs::in_flight(conn, slice_id)? {
        return Err(Error::Forbidden(
            "A job for this slice is still under way (its clean-up, perhaps): make it again when it ends."
                .into(),
        ));
    }
    rows::retake(conn, slice_id)?;
    event(
        conn,
        slice_id,
        &format!("Made again, as {} asked.", staff.username),
    )?;
    jobs::enqueue(
        conn,
        JobKind::Provision,
        slice_id,
        Some(slice.user_id),
        slice.node_id,
    )?;
    audit::record(
        conn,
        audit::Event::SliceRemade,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Slice(slice_id),
        slice.failure.as_str(),
    )?;
    get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}
