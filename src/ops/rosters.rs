//! Course rosters: staff paste a course's list of students (CSV); each address on it is
//! invited by mail once, and a request of theirs for that course needs no approval: the staff
//! member who listed them approved it in advance (quotas and the course's plan still apply).
//! A student on no roster asks as before.

use rusqlite::Connection;

use crate::domain::{DisplayName, Email, FieldError, Role, Username};
use crate::error::{Error, Result};
use crate::ops::accounts::{audit, Actor, User};
use crate::records::rosters::{self, NewEntry};

/// The most lines one paste may have.
pub const MAX_LINES: usize = 5000;

/// Splits one CSV line into its cells (commas; double quotes around a cell, `""` inside).
fn cells(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut cell).trim().to_string()),
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    out.push(cell.trim().to_string());
    Ok(out)
}

/// Which cell holds what: from a header line (`username`, `email`, `name`, `course`, in any
/// order and case), else the issue's order: username or email, name, course.
#[derive(Debug, Clone, Copy)]
struct Columns {
    login: Option<usize>,
    email: Option<usize>,
    username: Option<usize>,
    name: Option<usize>,
    course: Option<usize>,
}

fn header(cells: &[String]) -> Option<Columns> {
    let find = |names: &[&str]| {
        cells
            .iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
    };
    let cols = Columns {
        login: None,
        email: find(&["email", "e-mail", "mail", "address"]),
        username: find(&["username", "user", "login", "uid"]),
        name: find(&["name", "full name", "display name"]),
        course: find(&["course", "course code"]),
    };
    (cols.email.is_some() || cols.username.is_some()).then_some(cols)
}

/// Reads a pasted roster for `course`. Every line is checked; any problem refuses the whole
/// paste with one message per bad line (numbered as the person sees them), so nothing is half
/// imported. Blank lines are skipped; the same person twice is kept once.
pub fn parse(text: &str, course: &str) -> std::result::Result<Vec<NewEntry>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out: Vec<NewEntry> = Vec::new();
    let mut cols = Columns {
        login: Some(0),
        email: None,
        username: None,
        name: Some(1),
        course: Some(2),
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}').trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.len() > MAX_LINES {
        return Err(vec![format!(
            "A roster may have at most {MAX_LINES} lines; this one has {}: paste it in parts.",
            lines.len()
        )]);
    }
    for (k, (n, line)) in lines.iter().enumerate() {
        let row = match cells(line) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("Line {n}: {e}."));
                continue;
            }
        };
        if k == 0 {
            if let Some(h) = header(&row) {
                cols = h;
                continue;
            }
        }
        let get = |i: Option<usize>| i.and_then(|i| row.get(i)).map(String::as_str).unwrap_or("");
        let (mut email, mut username) = (get(cols.email), get(cols.username));
        let login = get(cols.login);
        if login.contains('@') {
            email = login;
        } else if !login.is_empty() {
            username = login;
        }
        let named_course = get(cols.course);
        if !named_course.is_empty() && !named_course.eq_ignore_ascii_case(course) {
            problems.push(format!(
                "Line {n}: it names the course {named_course}; this is the roster of {course}."
            ));
            continue;
        }
        if email.is_empty() && username.is_empty() {
            problems.push(format!("Line {n}: give an email address or a username."));
            continue;
        }
        let email = match email {
            "" => None,
            e => match Email::parse(e) {
                Ok(e) => Some(e.as_str().to_lowercase()),
                Err(err) => {
                    problems.push(format!("Line {n}: {e}: {}", err.message));
                    continue;
                }
            },
        };
        let username = match username {
            "" => None,
            u => match Username::parse(&u.to_lowercase()) {
                Ok(u) => Some(u.as_str().to_string()),
                Err(err) => {
                    problems.push(format!("Line {n}: {u}: {}", err.message));
                    continue;
                }
            },
        };
        let name = match get(cols.name) {
            "" => String::new(),
            raw => match DisplayName::parse(raw) {
                Ok(d) => d.as_str().to_string(),
                Err(err) => {
                    problems.push(format!("Line {n}: {raw}: {}", err.message));
                    continue;
                }
            },
        };
        let entry = NewEntry {
            email,
            username,
            name,
        };
        if !out.iter().any(|e| e.key() == entry.key()) {
            out.push(entry);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if out.is_empty() {
        return Err(vec![
            "There is nobody in it: paste one student per line.".into()
        ]);
    }
    Ok(out)
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub added: usize,
    pub already: usize,
    pub invited: usize,
}

/// Puts `entries` on `course`'s roster, in one transaction with its audit row, and queues one
/// invitation to each address not invited before. `signup`: whether people make their account
/// here (the mail links the sign-up page), or log in with the college's (the log-in page).
pub fn import(
    conn: &Connection,
    staff: &User,
    course: &str,
    entries: &[NewEntry],
    signup: bool,
    ip: &str,
) -> Result<Imported> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff keep rosters.".into()));
    }
    let course = crate::records::courses::get(conn, course)?.ok_or(Error::NotFound("course"))?;
    let mut done = Imported::default();
    let invited: std::collections::HashSet<String> = rosters::for_course(conn, &course.code)?
        .into_iter()
        .filter(|r| r.invited_at.is_some())
        .map(|r| r.entry)
        .collect();
    for e in entries {
        if rosters::put(conn, &course.code, e, staff.id)? {
            done.added += 1;
        } else {
            done.already += 1;
        }
        let Some(email) = &e.email else { continue };
        if invited.contains(&e.key()) {
            continue;
        }
        crate::mail::enqueue(
            conn,
            crate::mail::Kind::RosterInvite,
            email,
            &e.name,
            serde_json::json!({
                "course": course.code, "title": course.title, "name": e.name,
                "email": email, "email_query": query_escape(email),
                // Someone with an account here already logs in with it.
                "signup": signup && crate::records::users::by_email(conn, email)?.is_none(),
                "staff": staff.display_name,
            }),
            None,
            None,
        )?;
        rosters::mark_invited(conn, &course.code, &e.key())?;
        done.invited += 1;
    }
    audit::record(
        conn,
        audit::Event::RosterImported,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Course(&course.code),
        &format!(
            "{} added, {} already on it, {} invited",
            done.added, done.already, done.invited
        ),
    )?;
    Ok(done)
}

/// Takes `entry` (an address or username, as the roster shows it) off `course`'s roster: their
/// slices stay, later requests wait for approval. Audited.
pub fn remove(conn: &Connection, staff: &User, course: &str, entry: &str, ip: &str) -> Result<()> {
    if staff.role < Role::Staff {
        return Err(Error::Forbidden("Only staff keep rosters.".into()));
    }
    if !rosters::remove(conn, course, entry)? {
        return Err(Error::NotFound("roster entry"));
    }
    audit::record(
        conn,
        audit::Event::RosterEntryRemoved,
        &Actor {
            user_id: Some(staff.id),
            ip,
        },
        crate::records::audit::Subject::Course(course),
        entry,
    )
}

/// Percent-encodes all but unreserved characters, for a value in a link's query.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The staff member whose roster approves `user`'s request for `course` in advance, if any
/// (still staff and enabled).
pub fn approver(conn: &Connection, course: &str, user: &User) -> Result<Option<User>> {
    if course.is_empty() {
        return Ok(None);
    }
    let Some(Some(by)) = rosters::listed_by(conn, course, user)? else {
        return Ok(None);
    };
    Ok(crate::records::users::by_id(conn, by)?
        .filter(|u| u.role >= Role::Staff && !u.is_disabled()))
}

/// A problem with the pasted text, as a form error.
pub fn problems_error(problems: Vec<String>) -> Error {
    Error::Invalid(vec![FieldError::new("csv", problems.join("\n"))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_take_quotes_and_commas() {
        assert_eq!(
            cells(r#"ada@x.edu, "Lovelace, Ada" ,CS3650"#).unwrap(),
            vec!["ada@x.edu", "Lovelace, Ada", "CS3650"]
        );
        assert_eq!(
            cells(r#""say ""hi""",b"#).unwrap(),
            vec![r#"say "hi""#, "b"]
        );
        assert!(cells(r#""open,b"#).is_err());
    }

    #[test]
    fn a_roster_with_or_without_a_header() {
        let plain = parse(
            "ada@X.edu,Ada Lovelace,CS3650\ngrace,Grace Hopper\n\n",
            "CS3650",
        )
        .unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0].email.as_deref(), Some("ada@x.edu"));
        assert_eq!(plain[1].username.as_deref(), Some("grace"));
        assert_eq!(plain[1].name, "Grace Hopper");
        let headed = parse(
            "Name,Email,Username\nAda Lovelace,ada@x.edu,ada\nAda Lovelace,ada@x.edu,ada\n",
            "CS3650",
        )
        .unwrap();
        assert_eq!(headed.len(), 1, "the same person twice is kept once");
        assert_eq!(headed[0].username.as_deref(), Some("ada"));
        assert_eq!(headed[0].key(), "ada@x.edu");
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_is_taken() {
        let err = parse(
            "ada@x.edu,Ada\nnot an address@,Bob\n,Nobody\nalan,Alan,CS9999\n\"open,x\n",
            "CS3650",
        )
        .unwrap_err();
        assert_eq!(err.len(), 4, "{err:?}");
        assert!(err[0].starts_with("Line 2:"), "{err:?}");
        assert!(err[1].starts_with("Line 3:"), "{err:?}");
        assert!(err[2].contains("this is the roster of CS3650"), "{err:?}");
        assert!(err[3].starts_with("Line 5:"), "{err:?}");
        assert!(parse("\n\n", "CS3650").is_err());
        assert!(parse("a;rm -rf /,x", "CS3650").is_err());
    }
}
