//! Quotas: how many live slices a student may have and which plans they may choose. A default
//! rule, rules per course (the course named on the request) and per user; the most specific
//! applies (user, then course, then default). Checked when a request is made, and again when
//! staff approve it (before anything is provisioned).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::domain::FieldError;
use crate::error::{Error, Result};

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
    if let Some((max, plans)) = conn
        .query_row(
            "SELECT max_slices, plans FROM quotas WHERE scope = 'user' AND user_id = ?1",
            [user_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
    {
        return Ok(Quota {
            max_slices: max,
            plans: parse_plans(&plans),
            source: "your own quota".into(),
        });
    }
    let course = course.trim();
    if !course.is_empty() {
        if let Some((max, plans)) = conn
            .query_row(
                "SELECT max_slices, plans FROM quotas WHERE scope = 'course' AND course = ?1 COLLATE NOCASE",
                [course],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?
        {
            return Ok(Quota {
                max_slices: max,
                plans: parse_plans(&plans),
                source: format!("the quota of course {course}"),
            });
        }
    }
    let (max, plans) = conn
        .query_row(
            "SELECT max_slices, plans FROM quotas WHERE scope = 'default'",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
        .unwrap_or((1, String::new()));
    Ok(Quota {
        max_slices: max,
        plans: parse_plans(&plans),
        source: "the default quota".into(),
    })
}

/// Live slices of a user (all but destroyed and denied), leaving one out.
pub fn live_slices(
    conn: &Connection,
    user_id: i64,
    except: Option<i64>,
    approved_only: bool,
) -> Result<i64> {
    Ok(conn.query_row(
        &format!(
            "SELECT count(*) FROM slices WHERE user_id = ?1 AND id IS NOT ?2
               AND state NOT IN ('destroyed', 'denied'{})",
            if approved_only { ", 'requested'" } else { "" }
        ),
        params![user_id, except],
        |r| r.get(0),
    )?)
}

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
    let names: std::collections::HashMap<i64, String> = conn
        .prepare_cached("SELECT id, name FROM plans")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT q.id, q.scope, q.course, u.username, q.max_slices, q.plans
           FROM quotas q LEFT JOIN users u ON u.id = q.user_id
          ORDER BY q.scope = 'default' DESC, q.scope, q.course, u.username",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let plans: String = r.get(5)?;
            Ok(Rule {
                id: r.get(0)?,
                scope: r.get(1)?,
                course: r.get(2)?,
                username: r.get(3)?,
                max_slices: r.get(4)?,
                plans: parse_plans(&plans)
                    .unwrap_or_default()
                    .iter()
                    .map(|id| names.get(id).cloned().unwrap_or_else(|| format!("#{id}")))
                    .collect(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
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
        let known: Option<i64> = conn
            .query_row("SELECT id FROM plans WHERE id = ?1", [p], |r| r.get(0))
            .optional()?;
        if known.is_none() {
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
            conn.execute(
                "UPDATE quotas SET max_slices = ?1, plans = ?2 WHERE scope = 'default'",
                params![max_slices, plans_text],
            )?;
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
            conn.execute(
                "DELETE FROM quotas WHERE scope = 'course' AND course = ?1 COLLATE NOCASE",
                [course],
            )?;
            conn.execute(
                "INSERT INTO quotas (scope, course, max_slices, plans) VALUES ('course', ?1, ?2, ?3)",
                params![course, max_slices, plans_text],
            )?;
        }
        "user" => {
            let user = crate::accounts::users::by_username(conn, username.trim())?
                .ok_or_else(|| FieldError::new("username", "No user has that name."))?;
            conn.execute(
                "DELETE FROM quotas WHERE scope = 'user' AND user_id = ?1",
                [user.id],
            )?;
            conn.execute(
                "INSERT INTO quotas (scope, user_id, max_slices, plans) VALUES ('user', ?1, ?2, ?3)",
                params![user.id, max_slices, plans_text],
            )?;
        }
        _ => return Err(FieldError::new("scope", "Choose default, a course or a user.").into()),
    }
    Ok(())
}

/// Removes a course or user rule (the default stays).
pub fn remove(conn: &Connection, id: i64) -> Result<()> {
    let n = conn.execute(
        "DELETE FROM quotas WHERE id = ?1 AND scope <> 'default'",
        [id],
    )?;
    if n == 0 {
        return Err(Error::NotFound("quota rule"));
    }
    Ok(())
}
