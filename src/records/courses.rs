//! The `courses`, `course_staff` and `extensions` tables, and the columns of `slices` that say
//! how far each slice's end has gone (`term_stage`, `term_for`, `term_at`).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Course {
    pub code: String,
    pub title: String,
    /// The first second after the course's last day (Unix seconds, UTC).
    pub ends_at: i64,
    /// The plan a request for it starts with (None: the lab's default).
    pub plan_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "code, title, ends_at, plan_id, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Course> {
    Ok(Course {
        code: r.get(0)?,
        title: r.get(1)?,
        ends_at: r.get(2)?,
        plan_id: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

pub fn all(conn: &Connection) -> Result<Vec<Course>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM courses ORDER BY ends_at DESC, code"
    ))?;
    let rows = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The courses a student may still ask for a slice in (not ended at `at`), soonest end first.
pub fn open(conn: &Connection, at: i64) -> Result<Vec<Course>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM courses WHERE ends_at > ?1 ORDER BY code"
    ))?;
    let rows = stmt
        .query_map([at], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM courses")?
        .query_row([], |r| r.get(0))?)
}

pub fn get(conn: &Connection, code: &str) -> Result<Option<Course>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM courses WHERE code = ?1"))?
        .query_row([code], from_row)
        .optional()?)
}

/// When the course named `code` ends (None: no such course).
pub fn ends_at(conn: &Connection, code: &str) -> Result<Option<i64>> {
    if code.is_empty() {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached("SELECT ends_at FROM courses WHERE code = ?1")?
        .query_row([code], |r| r.get(0))
        .optional()?)
}

/// Adds a course, or changes the title, end and plan of the one with this code.
pub fn put(
    conn: &Connection,
    code: &str,
    title: &str,
    ends_at: i64,
    plan_id: Option<i64>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO courses (code, title, ends_at, plan_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT(code) DO UPDATE SET title = excluded.title, ends_at = excluded.ends_at,
           plan_id = excluded.plan_id, updated_at = excluded.updated_at",
    )?
    .execute(params![code, title, ends_at, plan_id, now()])?;
    Ok(())
}

/// The usernames of the course's staff members.
pub fn staff(conn: &Connection, code: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username FROM course_staff cs JOIN users u ON u.id = cs.user_id
          WHERE cs.course = ?1 ORDER BY u.username",
    )?;
    let rows = stmt
        .query_map([code], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// Makes the course's staff exactly these users.
pub fn set_staff(conn: &Connection, code: &str, user_ids: &[i64]) -> Result<()> {
    conn.prepare_cached("DELETE FROM course_staff WHERE course = ?1")?
        .execute([code])?;
    let mut add = conn
        .prepare_cached("INSERT OR IGNORE INTO course_staff (course, user_id) VALUES (?1, ?2)")?;
    for id in user_ids {
        add.execute(params![code, id])?;
    }
    Ok(())
}

/// How many slices of the course are live (not denied, withdrawn or destroyed).
pub fn live_slices(conn: &Connection, code: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM slices WHERE course = ?1
              AND state NOT IN ('denied', 'destroyed')",
        )?
        .query_row([code], |r| r.get(0))?)
}

/// A live slice whose end may need work, as the term pass reads it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub slice_id: i64,
    /// Its end: its own date, else its course's.
    pub ends_at: i64,
    pub stage: i64,
    /// The end the stage was reached for (None: no stage yet).
    pub stage_for: Option<i64>,
    pub stage_at: Option<i64>,
}

/// Whether any slice can end: a course exists, or a slice has a date of its own.
pub fn any_ends(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM courses)
                 OR EXISTS (SELECT 1 FROM slices WHERE expires_at IS NOT NULL)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// How long before its end each warning goes (stages 1, 2, 3), and the end itself (stage 4).
pub const WARN_14: i64 = 14 * 86_400;
pub const WARN_3: i64 = 3 * 86_400;
pub const WARN_1: i64 = 86_400;

/// Live slices whose end needs work at `at`: a stage due that was not reached for the end they
/// have now, or a stage reached for another end (their date moved), or stopped at their end
/// longer than `grace` ago. At most `limit`, soonest end first; a row done leaves the set.
pub fn ending(conn: &Connection, at: i64, grace: i64, limit: i64) -> Result<Vec<Ending>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, ends, term_stage, term_for, term_at FROM (
           SELECT s.id, COALESCE(s.expires_at, c.ends_at) AS ends,
                  s.term_stage, s.term_for, s.term_at
             FROM slices s LEFT JOIN courses c ON c.code = s.course AND s.course <> ''
            WHERE s.state NOT IN ('requested', 'denied', 'destroying', 'destroyed')
              AND (s.expires_at IS NOT NULL OR c.ends_at IS NOT NULL))
          WHERE (term_stage > 0 AND term_for IS NOT ends)
             OR (CASE WHEN ?1 >= ends THEN 4 WHEN ?1 >= ends - ?3 THEN 3
                      WHEN ?1 >= ends - ?4 THEN 2 WHEN ?1 >= ends - ?5 THEN 1 ELSE 0 END)
                > (CASE WHEN term_for IS ends THEN term_stage ELSE 0 END)
             OR (term_stage = 4 AND term_for IS ends AND ?1 >= max(ends, term_at) + ?2)
          ORDER BY ends, id LIMIT ?6",
    )?;
    let rows = stmt
        .query_map(params![at, grace, WARN_1, WARN_3, WARN_14, limit], |r| {
            Ok(Ending {
                slice_id: r.get(0)?,
                ends_at: r.get(1)?,
                stage: r.get(2)?,
                stage_for: r.get(3)?,
                stage_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Records that the slice's end reached `stage` for the end `ends_at`, unless another pass
/// did first (the stage it had is checked): true when this call moved it.
pub fn set_stage(
    conn: &Connection,
    slice_id: i64,
    from: i64,
    stage: i64,
    ends_at: i64,
    at: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE slices SET term_stage = ?3, term_for = ?4, term_at = ?5
              WHERE id = ?1 AND term_stage = ?2",
        )?
        .execute(params![slice_id, from, stage, ends_at, at])?;
    Ok(n == 1)
}

/// The stage of the slice's end and the end it was reached for.
pub fn stage(conn: &Connection, slice_id: i64) -> Result<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached("SELECT term_stage, term_for FROM slices WHERE id = ?1")?
        .query_row([slice_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Gives a slice an end of its own (None: it ends with its course again).
pub fn set_expiry(conn: &Connection, slice_id: i64, expires_at: Option<i64>) -> Result<()> {
    conn.prepare_cached("UPDATE slices SET expires_at = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![slice_id, expires_at, now()])?;
    Ok(())
}

/// The states a request for more time can be in.
pub const EXTENSION_STATES: [&str; 4] = ["waiting", "approved", "denied", "withdrawn"];

#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    pub id: i64,
    pub slice_id: i64,
    pub asked_by: i64,
    pub asked_at: i64,
    pub until: i64,
    pub reason: String,
    pub state: String,
    pub decided_at: Option<i64>,
    pub note: String,
}

const EXT_COLUMNS: &str =
    "id, slice_id, asked_by, asked_at, until, reason, state, decided_at, note";

fn ext_from_row(r: &Row<'_>) -> rusqlite::Result<Extension> {
    Ok(Extension {
        id: r.get(0)?,
        slice_id: r.get(1)?,
        asked_by: r.get(2)?,
        asked_at: r.get(3)?,
        until: r.get(4)?,
        reason: r.get(5)?,
        state: r.get(6)?,
        decided_at: r.get(7)?,
        note: r.get(8)?,
    })
}

pub fn ask_extension(
    conn: &Connection,
    slice_id: i64,
    asked_by: i64,
    until: i64,
    reason: &str,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO extensions (slice_id, asked_by, asked_at, until, reason)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![slice_id, asked_by, now(), until, reason])?;
    Ok(conn.last_insert_rowid())
}

pub fn extension(conn: &Connection, id: i64) -> Result<Option<Extension>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EXT_COLUMNS} FROM extensions WHERE id = ?1"
        ))?
        .query_row([id], ext_from_row)
        .optional()?)
}

/// The slice's extension request that waits for staff, if any.
pub fn waiting_extension(conn: &Connection, slice_id: i64) -> Result<Option<Extension>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EXT_COLUMNS} FROM extensions WHERE slice_id = ?1 AND state = 'waiting'"
        ))?
        .query_row([slice_id], ext_from_row)
        .optional()?)
}

/// Every extension request that waits for staff, oldest first, with the slice's name and
/// owner's username.
pub fn waiting_extensions(conn: &Connection) -> Result<Vec<(Extension, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.slice_id, e.asked_by, e.asked_at, e.until, e.reason, e.state,
                e.decided_at, e.note, s.hostname, u.username
           FROM extensions e JOIN slices s ON s.id = e.slice_id JOIN users u ON u.id = s.user_id
          WHERE e.state = 'waiting' ORDER BY e.asked_at, e.id LIMIT 500",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((ext_from_row(r)?, r.get(9)?, r.get(10)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Decides a waiting request: true when it was still waiting.
pub fn decide_extension(
    conn: &Connection,
    id: i64,
    state: &str,
    by: Option<i64>,
    note: &str,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE extensions SET state = ?2, decided_by = ?3, decided_at = ?4, note = ?5
              WHERE id = ?1 AND state = 'waiting'",
        )?
        .execute(params![id, state, by, now(), note])?;
    Ok(n == 1)
}

/// Makes `codes` (those that name a course here) the courses the directory says `user_id` is
/// in; the courses a roster put them in stay. Returns the codes kept.
pub fn set_directory_members(
    conn: &Connection,
    user_id: i64,
    codes: &[String],
) -> Result<Vec<String>> {
    conn.prepare_cached("DELETE FROM course_members WHERE user_id = ?1 AND source = 'directory'")?
        .execute([user_id])?;
    let mut kept = Vec::new();
    for code in codes {
        let Some(course) = get(conn, code)? else {
            continue;
        };
        conn.prepare_cached(
            "INSERT OR IGNORE INTO course_members (course, user_id, source, added_at)
             VALUES (?1, ?2, 'directory', ?3)",
        )?
        .execute(params![course.code, user_id, now()])?;
        kept.push(course.code);
    }
    Ok(kept)
}

/// The courses `user_id` belongs to (from any source), by code.
pub fn member_of(conn: &Connection, user_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT course FROM course_members WHERE user_id = ?1 ORDER BY course",
    )?;
    let rows = stmt
        .query_map([user_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}
