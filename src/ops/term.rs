//! A slice's term: courses with an end date, the warnings before a slice's end, stopping it at
//! its end and destroying it after the grace period, and students' requests for more time.
//!
//! A slice ends on its own date (`slices.expires_at`: set by staff, or by an approved
//! extension) or else with its course. The term pass ([`pass`], run by the `term` job every
//! few minutes and at start) moves each slice through the stages of its end, each stage one
//! transaction with its event, mail and job, recorded with the end date it was reached for: a
//! restart or a second pass does nothing twice, a clock set back undoes nothing, and a date
//! that moves (an extension, a course's new end) starts the warnings again for the new one.

use rusqlite::Connection;

use crate::domain::{FieldError, Role};
use crate::error::{Error, Result};
use crate::ops::accounts::{audit, Actor, User};
use crate::ops::slices::{self, Slice, State};
use crate::records::courses::{self as rows, Course, WARN_1, WARN_14, WARN_3};
use crate::records::jobs::{self, JobKind};

/// Stages of a slice's end (`slices.term_stage`).
pub const STAGE_STOPPED: i64 = 4;
pub const STAGE_DESTROYED: i64 = 5;

/// At most this many slices in one transaction of the pass.
const BATCH: i64 = 200;

/// When the slice ends: its own date, else its course's (None: it does not end by itself).
pub fn ends_at(conn: &Connection, slice: &Slice) -> Result<Option<i64>> {
    match slice.expires_at {
        Some(t) => Ok(Some(t)),
        None => rows::ends_at(conn, &slice.course),
    }
}

/// Whether the slice's end has come at `at`.
pub fn ended(conn: &Connection, slice: &Slice, at: i64) -> Result<bool> {
    Ok(ends_at(conn, slice)?.is_some_and(|t| at >= t))
}

/// Whether the term check stopped the slice at its end (and said so by mail): its stage for
/// the end it has now is "stopped".
pub fn stopped_at_end(conn: &Connection, slice: &Slice) -> Result<bool> {
    let Some(ends) = ends_at(conn, slice)? else {
        return Ok(false);
    };
    let (stage, stage_for) = rows::stage(conn, slice.id)?;
    Ok(stage == STAGE_STOPPED && stage_for == Some(ends))
}

/// The last day of a term ending at `ends_at` (which is the first second after it).
pub fn last_day(ends_at: i64) -> String {
    crate::clock::format_day(ends_at - 1)
}

/// A course as staff fill it in: the end is the course's last day, `YYYY-MM-DD`; `staff` the
/// usernames of its staff members, comma- or space-separated; `max_slices` empty for the
/// lab's default quota.
#[derive(Debug, Clone, Default)]
pub struct CourseInput {
    pub code: String,
    pub title: String,
    pub last_day: String,
    pub plan_id: Option<i64>,
    pub staff: String,
    pub max_slices: String,
}

/// Adds a course or changes one (found by its code): one transaction with its staff list,
/// its quota rule and the audit row. Returns the course's code as stored.
pub fn put_course(
    conn: &Connection,
    by: &User,
    input: &CourseInput,
    at: i64,
    ip: &str,
) -> Result<String> {
    if by.role < Role::Staff {
        return Err(Error::Forbidden("Only staff define courses.".into()));
    }
    let mut problems = crate::error::Problems::default();
    let code = input.code.trim();
    let code_ok = !code.is_empty()
        && code.len() <= 32
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c))
        && !code.contains("  ");
    if !code_ok {
        problems.push(FieldError::new(
            "code",
            "A course code is 1 to 32 letters, digits, spaces, `.`, `_` or `-`, such as `CS 3650`.",
        ));
    }
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        problems.push(FieldError::new(
            "title",
            "A title of 1 to 200 characters of plain text.",
        ));
    }
    let ends = match crate::clock::parse_day(&input.last_day) {
        None => {
            problems.push(FieldError::new(
                "last_day",
                "The course's last day, written 2026-12-18.",
            ));
            None
        }
        // Slices of the course stop at its end: a date already past would stop them all at
        // once, which is never what a typo should do.
        Some(day) if day + 86_400 <= at => {
            problems.push(FieldError::new(
                "last_day",
                "That day is past: its slices would stop at once. Pick today or a later day.",
            ));
            None
        }
        Some(day) if day > at + 5 * 366 * 86_400 => {
            problems.push(FieldError::new("last_day", "At most five years ahead."));
            None
        }
        Some(day) => Some(day + 86_400),
    };
    if let Some(p) = input.plan_id {
        if !crate::records::plans::exists(conn, p)? {
            problems.push(FieldError::new("plan", "Choose one of the plans."));
        }
    }
    let mut staff_ids = Vec::new();
    for name in input
        .staff
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        match crate::records::users::by_username(conn, name)? {
            Some(u) if u.role.is_staff() => staff_ids.push(u.id),
            Some(_) => problems.push(FieldError::new(
                "staff",
                format!("{name} is not staff: make them staff on the Users page first."),
            )),
            None => problems.push(FieldError::new(
                "staff",
                format!("No user is called {name}."),
            )),
        }
    }
    let max_slices = match input.max_slices.trim() {
        "" => None,
        t => match t.parse::<i64>() {
            Ok(n) if (0..=100).contains(&n) => Some(n),
            _ => {
                problems.push(FieldError::new("max_slices", "From 0 to 100, or empty."));
                None
            }
        },
    };
    problems.finish()?;
    let Some(ends) = ends else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a checked field had no value"
        )));
    };
    // The code is kept as first written (a later edit may differ only in case).
    let code = rows::get(conn, code)?
        .map(|c| c.code)
        .unwrap_or(code.to_string());
    let before = rows::get(conn, &code)?;
    rows::put(conn, &code, title, ends, input.plan_id)?;
    rows::set_staff(conn, &code, &staff_ids)?;
    // The course's quota rule (every plan allowed: the plan above is where requests start).
    if let Some(n) = max_slices {
        crate::ops::quotas::set(conn, "course", &code, "", n, &[])?;
    }
    let detail = match before {
        None => format!("added, last day {}", last_day(ends)),
        Some(b) if b.ends_at != ends => {
            format!("last day {} (was {})", last_day(ends), last_day(b.ends_at))
        }
        Some(_) => "changed".to_string(),
    };
    audit::record(
        conn,
        audit::Event::CourseChanged,
        &Actor {
            user_id: Some(by.id),
            ip,
        },
        crate::records::audit::Subject::Course(&code),
        &detail,
    )?;
    Ok(code)
}

/// A course with what its page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CourseView {
    pub course: Course,
    pub last_day: String,
    pub ended: bool,
    pub staff: Vec<String>,
    pub live_slices: i64,
    /// How many people its roster lists.
    pub on_roster: i64,
    /// Its quota rule's number of slices per student, if it has a rule of its own.
    pub max_slices: Option<i64>,
}

pub fn courses(conn: &Connection, at: i64) -> Result<Vec<CourseView>> {
    let rules = crate::ops::quotas::rules(conn)?;
    let on_roster = crate::records::rosters::counts(conn)?;
    rows::all(conn)?
        .into_iter()
        .map(|c| {
            Ok(CourseView {
                max_slices: rules
                    .iter()
                    .find(|r| r.scope == "course" && r.course == c.code)
                    .map(|r| r.max_slices),
                last_day: last_day(c.ends_at),
                ended: at >= c.ends_at,
                staff: rows::staff(conn, &c.code)?,
                live_slices: rows::live_slices(conn, &c.code)?,
                on_roster: on_roster.get(&c.code).copied().unwrap_or(0),
                course: c,
            })
        })
        .collect()
}

/// Checks the course a student names on a request: when the lab defines courses, it is one of
/// those not yet ended (as stored), or none; when it defines none, any plain text (as before
/// courses existed). Returns the course as it is to be stored, and its plan.
pub fn course_for_request(
    conn: &Connection,
    named: &str,
    at: i64,
) -> Result<(String, Option<i64>)> {
    let named = named.trim();
    if named.is_empty() || rows::count(conn)? == 0 {
        return Ok((named.to_string(), None));
    }
    match rows::get(conn, named)? {
        Some(c) if c.ends_at > at => Ok((c.code, c.plan_id)),
        Some(c) => Err(FieldError::new(
            "course",
            format!(
                "{} ended on {}: choose another course.",
                c.code,
                last_day(c.ends_at)
            ),
        )
        .into()),
        None => Err(FieldError::new("course", "Choose one of the courses listed.").into()),
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    pub warned: usize,
    pub stopped: usize,
    pub destroyed: usize,
    /// Slices whose date moved, so their stage started again.
    pub reset: usize,
}

/// One batch of the term pass at `at`, with `grace` seconds between a slice's end and its
/// destruction: does what is due for at most [`BATCH`] slices. Returns what it did and
/// whether more may be due (call again, in a new transaction).
pub fn pass(conn: &Connection, at: i64, grace: i64) -> Result<(Passed, bool)> {
    // A lab without courses or dates reads nothing more (two index lookups).
    if !rows::any_ends(conn)? {
        return Ok((Passed::default(), false));
    }
    let due = rows::ending(conn, at, grace, BATCH)?;
    let more = due.len() as i64 == BATCH;
    let mut done = Passed::default();
    for e in due {
        let stage_now = if e.stage_for == Some(e.ends_at) {
            e.stage
        } else {
            0
        };
        let wanted = if at >= e.ends_at {
            STAGE_STOPPED
        } else if at >= e.ends_at - WARN_1 {
            3
        } else if at >= e.ends_at - WARN_3 {
            2
        } else if at >= e.ends_at - WARN_14 {
            1
        } else {
            0
        };
        let destroy_at = e.ends_at.max(e.stage_at.unwrap_or(e.ends_at)) + grace;
        if stage_now == STAGE_STOPPED && at >= destroy_at {
            if end_destroy(conn, &e, at)? {
                done.destroyed += 1;
            }
        } else if wanted > stage_now {
            if wanted == STAGE_STOPPED {
                match end_stop(conn, &e, at, grace)? {
                    Some(STAGE_STOPPED) => done.stopped += 1,
                    Some(_) => done.destroyed += 1,
                    None => {}
                }
            } else if warn(conn, &e, wanted, at, grace)? {
                done.warned += 1;
            }
        } else if e.stage != stage_now || e.stage_for != Some(e.ends_at) {
            // Its date moved: the stage starts again for the new one.
            if rows::set_stage(conn, e.slice_id, e.stage, stage_now, e.ends_at, at)? {
                done.reset += 1;
            }
        }
    }
    Ok((done, more))
}

/// Days left before the end, to the nearest whole day: 14, 3 and 1 when the warnings go, 10
/// on the morning ten days before the last day, 0 on the afternoon of the last day.
pub fn days_left(ends_at: i64, at: i64) -> i64 {
    ((ends_at - at).max(0) + 43_200) / 86_400
}

fn warn(conn: &Connection, e: &rows::Ending, stage: i64, at: i64, grace: i64) -> Result<bool> {
    if !rows::set_stage(conn, e.slice_id, e.stage, stage, e.ends_at, at)? {
        return Ok(false);
    }
    let days = days_left(e.ends_at, at);
    slices::event(
        conn,
        e.slice_id,
        &format!(
            "It ends on {} ({}); warned by mail.",
            last_day(e.ends_at),
            match days {
                0 => "today".to_string(),
                1 => "1 day left".to_string(),
                n => format!("{n} days left"),
            }
        ),
    )?;
    slices::mail_owner(
        conn,
        e.slice_id,
        crate::mail::Kind::ExpiryWarning,
        serde_json::json!({
            "days": days,
            "ends_day": last_day(e.ends_at),
            "ends_time": crate::clock::format_time(e.ends_at),
            "grace_days": grace / 86_400,
        }),
    )?;
    Ok(true)
}

/// The end came: the slice is stopped (or, never placed, destroyed at once). Returns the
/// stage reached, if this call reached one.
fn end_stop(conn: &Connection, e: &rows::Ending, at: i64, grace: i64) -> Result<Option<i64>> {
    let slice = slices::get(conn, e.slice_id)?.ok_or(Error::NotFound("slice"))?;
    match slice.state {
        // Never placed: nothing to keep, so it goes now.
        State::Approved | State::Queued => {
            return Ok(end_destroy(conn, e, at)?.then_some(STAGE_DESTROYED))
        }
        // A job is making it: the next pass stops it once it is made.
        State::Provisioning => return Ok(None),
        _ => {}
    }
    if !rows::set_stage(conn, e.slice_id, e.stage, STAGE_STOPPED, e.ends_at, at)? {
        return Ok(None);
    }
    let destroy_day = crate::clock::format_day(e.ends_at.max(at) + grace);
    if slice.state == State::Running {
        jobs::enqueue(
            conn,
            JobKind::Stop,
            slice.id,
            Some(slice.user_id),
            slice.node_id,
        )?;
    }
    slices::event(
        conn,
        slice.id,
        &format!(
            "Its end came ({}): {}. It will be destroyed on {destroy_day}.",
            last_day(e.ends_at),
            if slice.state == State::Running {
                "stopping it"
            } else {
                "it stays stopped"
            }
        ),
    )?;
    slices::mail_owner(
        conn,
        slice.id,
        crate::mail::Kind::Expired,
        serde_json::json!({
            "ends_day": last_day(e.ends_at),
            "destroy_day": destroy_day,
        }),
    )?;
    audit::record(
        conn,
        audit::Event::SliceExpired,
        &Actor::default(),
        crate::records::audit::Subject::Slice(slice.id),
        "stopped",
    )?;
    Ok(Some(STAGE_STOPPED))
}

fn end_destroy(conn: &Connection, e: &rows::Ending, at: i64) -> Result<bool> {
    if !rows::set_stage(conn, e.slice_id, e.stage, STAGE_DESTROYED, e.ends_at, at)? {
        return Ok(false);
    }
    let slice = slices::get(conn, e.slice_id)?.ok_or(Error::NotFound("slice"))?;
    slices::begin_destroy(
        conn,
        &slice,
        &format!(
            "Destroying it: its end came on {} and the grace period is over.",
            last_day(e.ends_at)
        ),
    )?;
    audit::record(
        conn,
        audit::Event::SliceExpired,
        &Actor::default(),
        crate::records::audit::Subject::Slice(slice.id),
        "destroyed",
    )?;
    Ok(true)
}

/// A student asks for more time for their slice, until `until_day` (its new last day), with a
/// reason staff read. One request waits at a time per slice.
pub fn ask_extension(
    conn: &Connection,
    who: &User,
    slice_id: i64,
    until_day: &str,
    reason: &str,
    at: i64,
) -> Result<()> {
    let slice = slices::get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    if slice.user_id != who.id {
        return Err(Error::NotFound("slice"));
    }
    if matches!(
        slice.state,
        State::Requested | State::Denied | State::Destroying | State::Destroyed
    ) {
        return Err(Error::Forbidden(format!(
            "A {} slice cannot be given more time.",
            slice.state.as_str()
        )));
    }
    let Some(ends) = ends_at(conn, &slice)? else {
        return Err(Error::Forbidden(
            "This slice has no end date: it needs no more time.".into(),
        ));
    };
    if rows::waiting_extension(conn, slice_id)?.is_some() {
        return Err(Error::Forbidden(
            "You already asked for more time for this slice; the lab staff will decide.".into(),
        ));
    }
    let mut problems = crate::error::Problems::default();
    let until = match crate::clock::parse_day(until_day) {
        Some(day) if day + 86_400 <= ends => {
            problems.push(FieldError::new(
                "until",
                format!("A day after its last day now, {}.", last_day(ends)),
            ));
            None
        }
        Some(day) if day > at + 366 * 86_400 => {
            problems.push(FieldError::new("until", "At most a year from today."));
            None
        }
        Some(day) => Some(day + 86_400),
        None => {
            problems.push(FieldError::new(
                "until",
                "The new last day, written 2027-01-31.",
            ));
            None
        }
    };
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > 1000
        || reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        problems.push(FieldError::new(
            "reason",
            "Say why you need it longer (up to 1000 characters); the lab staff read it.",
        ));
    }
    problems.finish()?;
    let Some(until) = until else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a checked field had no value"
        )));
    };
    rows::ask_extension(conn, slice_id, who.id, until, reason)?;
    slices::event(
        conn,
        slice_id,
        &format!(
            "{} asked for more time, until {}; waiting for the lab staff.",
            who.username,
            last_day(until)
        ),
    )?;
    let mut data = slices::mail_data(conn, &slice)?;
    if let serde_json::Value::Object(m) = &mut data {
        m.insert("until_day".into(), last_day(until).into());
        m.insert("ends_day".into(), last_day(ends).into());
        m.insert("reason".into(), reason.into());
    }
    // The course's own staff if it has any, else every member of staff.
    let course_staff = rows::staff(conn, &slice.course)?;
    if course_staff.is_empty() {
        crate::mail::to_staff(
            conn,
            crate::mail::Kind::ExtensionAsked,
            data,
            Some(slice_id),
        )?;
    } else {
        for name in course_staff {
            if let Some(u) = crate::records::users::by_username(conn, &name)? {
                if u.disabled_at.is_none() {
                    crate::mail::to_user(
                        conn,
                        crate::mail::Kind::ExtensionAsked,
                        u.id,
                        data.clone(),
                        Some(slice_id),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Staff approve (the slice's end moves to the date asked) or deny a request for more time.
pub fn decide_extension(
    conn: &Connection,
    staff: &User,
    id: i64,
    approve: bool,
    note: &str,
    ip: &str,
) -> Result<Slice> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff decide requests.".into()));
    }
    let note = note.trim();
    if note.chars().count() > 500 || note.chars().any(char::is_control) {
        return Err(FieldError::new("note", "At most 500 characters of plain text.").into());
    }
    let ext = rows::extension(conn, id)?.ok_or(Error::NotFound("request"))?;
    let slice = slices::get(conn, ext.slice_id)?.ok_or(Error::NotFound("slice"))?;
    let ends = ends_at(conn, &slice)?;
    if approve && matches!(slice.state, State::Destroying | State::Destroyed) {
        return Err(Error::Forbidden(format!(
            "The slice is {} already: too late to give it more time.",
            slice.state.as_str()
        )));
    }
    if !rows::decide_extension(
        conn,
        id,
        if approve { "approved" } else { "denied" },
        Some(staff.id),
        note,
    )? {
        return Err(Error::Forbidden("This request was already decided.".into()));
    }
    if approve {
        rows::set_expiry(conn, slice.id, Some(ext.until))?;
    }
    slices::event(
        conn,
        slice.id,
        &if approve {
            format!(
                "More time approved by {}: it now ends on {}.",
                staff.username,
                last_day(ext.until)
            )
        } else {
            format!("More time denied by {}.", staff.username)
        },
    )?;
    slices::mail_owner(
        conn,
        slice.id,
        crate::mail::Kind::ExtensionDecided,
        serde_json::json!({
            "approved": approve,
            "note": note,
            "until_day": last_day(ext.until),
            "ends_day": ends.map(last_day).unwrap_or_default(),
            "stopped": slice.state == State::Stopped,
        }),
    )?;
    audit::record(
        conn,
        audit::Event::ExtensionDecided,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Slice(slice.id),
        &format!(
            "{} until {}{}{}",
            if approve { "approved" } else { "denied" },
            last_day(ext.until),
            if note.is_empty() { "" } else { ": " },
            note
        ),
    )?;
    slices::get(conn, slice.id)?.ok_or(Error::NotFound("slice"))
}

/// Staff give a slice an end of its own (`last_day`), or none (empty: it ends with its course
/// again).
pub fn set_slice_end(
    conn: &Connection,
    staff: &User,
    slice_id: i64,
    last_day_text: &str,
    at: i64,
    ip: &str,
) -> Result<Slice> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff set a slice's end.".into()));
    }
    let slice = slices::get(conn, slice_id)?.ok_or(Error::NotFound("slice"))?;
    let expires = match last_day_text.trim() {
        "" => None,
        t => match crate::clock::parse_day(t) {
            Some(day) if day + 86_400 > at => Some(day + 86_400),
            Some(_) => {
                return Err(FieldError::new(
                    "last_day",
                    "That day is past: destroy the slice instead, or pick today or later.",
                )
                .into())
            }
            None => return Err(FieldError::new("last_day", "A day written 2027-01-31.").into()),
        },
    };
    rows::set_expiry(conn, slice_id, expires)?;
    let said = match expires {
        Some(t) => format!("{} set its last day to {}.", staff.username, last_day(t)),
        None => format!("{} made it end with its course.", staff.username),
    };
    slices::event(conn, slice_id, &said)?;
    audit::record(
        conn,
        audit::Event::CourseChanged,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Slice(slice.id),
        &said,
    )?;
    slices::get(conn, slice_id)?.ok_or(Error::NotFound("slice"))
}

pub use rows::{waiting_extension, waiting_extensions, Extension};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_reads_as_people_count() {
        let ends = crate::clock::parse_day("2026-12-14").unwrap(); // last day 2026-12-13
        let at = |d: &str, h: i64| crate::clock::parse_day(d).unwrap() + h * 3600;
        assert_eq!(last_day(ends), "2026-12-13");
        assert_eq!(days_left(ends, at("2026-12-03", 15)), 10);
        assert_eq!(days_left(ends, ends - 14 * 86_400 + 60), 14);
        assert_eq!(days_left(ends, ends - 3 * 86_400 + 60), 3);
        assert_eq!(days_left(ends, ends - 86_400 + 60), 1);
        assert_eq!(days_left(ends, at("2026-12-13", 15)), 0);
        assert_eq!(days_left(ends, ends + 5), 0);
    }
}
