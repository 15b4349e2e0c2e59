//! Quotas: how many live slices a student may have and which plans they may choose. A default
//! rule, rules per course (the course named on the request) and per user; the most specific
//! applies (user, then course, then default). Checked when a request is made, and again when
//! staff approve it (before anything is provisioned).

use rusqlite::Connection;
use serde::Serialize;

use crate::domain::FieldError;
use crate::error::{Error, Result};
use crate::records::quotas as records;

/// The rule that applies to someone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quota {
    pub max_slices: i64,
    /// Plan ids allowed (None: every plan).
    pub plans: Option<Vec<i64>>,
    /// Where it comes from, for messages: "the default quota", "course CS 101", "your own".
    pub source: String,
}

/// A rule as staff manage it.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub id: i64,
    pub scope: String,
    pub course: String,
    pub username: Option<String>,
    pub max_slices: i64,
    pub plans: Vec<String>,
}

fn parse_plans(text: &str) -> Option<Vec<i64>> {
    let ids: Vec<i64> = text
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// The quota for a user asking for a slice for `course`.
pub fn for_user(conn: &Connection, user_id: i64, course: &str) -> Result<Quota> {
    if let Some((max, plans)) = records::for_user(conn, user_id)? {
        return Ok(Quota {
            max_slices: max,
            plans: parse_plans(&plans),
            source: "your own quota".into(),
        });
    }
    let course = course.trim();
    if !course.is_empty() {
        if let Some((max, plans)) = records::for_course(conn, course)? {
            return Ok(Quota {
                max_slices: max,
                plans: parse_plans(&plans),
                source: format!("the quota of course {course}"),
            });
        }
    }
    let (max, plans) = records::default_rule(conn)?.unwrap_or((1, String::new()));
    Ok(Quota {
        max_slices: max,
        plans: parse_plans(&plans),
        source: "the default quota".into(),
    })
}

pub use crate::records::quotas::live_slices;

/// Whether a user may have one more slice of `plan_id` for `course`; the refusal says why
/// and what to do.
pub fn check(
    conn: &Connection,
    user_id: i64,
    course: &str,
    plan_id: i64,
    except: Option<i64>,
    approved_only: bool,
    who: &str,
) -> Result<()> {
    let q = for_user(conn, user_id, course)?;
    let have = live_slices(conn, user_id, except, approved_only)?;
    if have >= q.max_slices {
        let m = if q.max_slices == 0 {
            format!(
                "{who} may not have slices under {}: ask the lab staff.",
                q.source
            )
        } else {
            format!(
                "{who} already {} {have} slice{}, the most {} allows ({}). Destroy one you no longer need, or ask the lab staff for more.",
                if who == "You" { "have" } else { "has" },
                if have == 1 { "" } else { "s" },
                q.source,
                q.max_slices
            )
        };
        return Err(FieldError::new("quota", m).into());
    }
    if let Some(allowed) = &q.plans {
        if !allowed.contains(&plan_id) {
            return Err(FieldError::new(
                "plan",
                format!(
                    "That plan is not in {}: choose another, or ask the lab staff.",
                    q.source
                ),
            )
            .into());
        }
    }
    Ok(())
}

pub fn rules(conn: &Connection) -> Result<Vec<Rule>> {
    let names = crate::records::plans::names(conn)?;
    Ok(records::all(conn)?
        .into_iter()
        .map(|(id, scope, course, username, max_slices, plans)| Rule {
            id,
            scope,
            course,
            username,
            max_slices,
            plans: parse_plans(&plans)
                .unwrap_or_default()
                .iter()
                .map(|id| names.get(id).cloned().unwrap_or_else(|| format!("#{id}")))
                .collect(),
        })
        .collect())
}

/// Sets a rule (replacing the one for the same scope and target).
pub fn set(
    conn: &Connection,
    scope: &str,
    course: &str,
    username: &str,
    max_slices: i64,
    plans: &[i64],
) -> Result<()> {
    if !(0..=100).contains(&max_slices) {
        return Err(FieldError::new("max_slices", "From 0 to 100.").into());
    }
    for p in plans {
        if !crate::records::plans::exists(conn, *p)? {
            return Err(FieldError::new("plans", "Choose plans that exist.").into());
        }
    }
    let plans_text = plans
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    match scope {
        "default" => {
            records::set_default(conn, max_slices, &plans_text)?;
        }
        "course" => {
            let course = course.trim();
            if course.is_empty() || course.len() > 100 || course.chars().any(char::is_control) {
                return Err(FieldError::new(
                    "course",
                    "Name the course, as students write it on requests.",
                )
                .into());
            }
            records::replace_for_course(conn, course, max_slices, &plans_text)?;
        }
        "user" => {
            let user = crate::ops::accounts::users::by_username(conn, username.trim())?
                .ok_or_else(|| FieldError::new("username", "No user has that name."))?;
            records::replace_for_user(conn, user.id, max_slices, &plans_text)?;
        }
        _ => return Err(FieldError::new("scope", "Choose default, a course or a user.").into()),
    }
    Ok(())
}

/// Removes a course or user rule (the default stays).
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    let n = records::remove(conn, id)?;
    if n == 0 {
        return Err(Error::NotFound("quota rule"));
    }
    Ok(())
}
