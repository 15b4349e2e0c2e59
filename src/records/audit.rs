//! Security events, kept in the `audit` table for staff to read.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

/// The kinds of event recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    SignUp,
    Login,
    LoginFailed,
    LoginThrottled,
    Logout,
    LogoutEverywhere,
    PasswordChanged,
    RoleChanged,
    AccountDisabled,
    AccountEnabled,
    AccountCreated,
    InviteCreated,
    SliceApproved,
    SliceDenied,
    NodeUnreachable,
    NodeReachable,
    EmailVerified,
    PasswordResetRequested,
    PasswordReset,
    NodeChanged,
    KeyAdded,
    KeyRemoved,
    LimitHit,
    /// What the master found on a node differing from its own picture (a slice stopped behind
    /// its back, a container gone, one it does not know).
    Drift,
    /// A container no slice held was removed from its node (staff asked).
    OrphanRemoved,
    /// Staff had a failed (or lost) slice made again.
    SliceRemade,
    /// A log-in through the built-in SSH gateway ended (who, which slice, from where, how
    /// long, bytes).
    GatewaySession,
    /// A terminal in the browser was opened in a slice (by its owner or by staff).
    TerminalOpened,
    /// Its owner (or staff) asked for a slice to be started, stopped, restarted, destroyed.
    SliceStart,
    SliceStop,
    SliceRestart,
    SliceDestroy,
    /// Its owner withdrew a request staff had not decided, or put a denied one away.
    SliceWithdrawn,
    /// Staff offered or withdrew a template.
    TemplateChanged,
    /// Staff changed the gateway (accepted its host key).
    GatewayChanged,
    /// Staff added a course or changed one (its end, plan, staff).
    CourseChanged,
    /// Staff approved or denied a student's request for more time.
    ExtensionDecided,
    /// A slice was stopped, or destroyed, because its end came (nobody asked: the term did).
    SliceExpired,
    /// Someone (its owner, or staff) downloaded the archive of a slice's /home.
    ArchiveDownloaded,
    /// Someone the college directory vouches for named an account here that is not linked to
    /// the directory: refused, for staff to decide (never merged on its own).
    DirectoryClash,
    /// Staff handed a local account over to the college directory (its password here dropped).
    AccountLinked,
    /// Staff put students on a course's roster (and invited them).
    RosterImported,
    /// Staff took someone off a course's roster.
    RosterEntryRemoved,
}

/// What an event is about: the audit log's typed "subject" column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    None,
    Account(&'a str),
    Slice(i64),
    Node(&'a str),
    /// A container on a node that no slice holds.
    Container {
        node: &'a str,
        veid: i64,
    },
    Template(&'a str),
    Gateway,
    Course(&'a str),
}

impl Subject<'_> {
    pub const KINDS: [&'static str; 7] = [
        "account",
        "slice",
        "node",
        "container",
        "template",
        "gateway",
        "course",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Subject::None => "",
            Subject::Account(_) => "account",
            Subject::Slice(_) => "slice",
            Subject::Node(_) => "node",
            Subject::Container { .. } => "container",
            Subject::Template(_) => "template",
            Subject::Gateway => "gateway",
            Subject::Course(_) => "course",
        }
    }

    /// As stored: the username, the slice's id, the node's name, `ve7 on node1`...
    pub fn text(&self) -> String {
        match self {
            Subject::None | Subject::Gateway => String::new(),
            Subject::Account(s) | Subject::Node(s) | Subject::Template(s) | Subject::Course(s) => {
                s.to_string()
            }
            Subject::Slice(id) => id.to_string(),
            Subject::Container { node, veid } => format!("ve{veid} on {node}"),
        }
    }
}

impl Event {
    pub const ALL: [Event; 43] = [
        Event::SignUp,
        Event::Login,
        Event::LoginFailed,
        Event::LoginThrottled,
        Event::Logout,
        Event::LogoutEverywhere,
        Event::PasswordChanged,
        Event::RoleChanged,
        Event::AccountDisabled,
        Event::AccountEnabled,
        Event::AccountCreated,
        Event::InviteCreated,
        Event::SliceApproved,
        Event::SliceDenied,
        Event::NodeUnreachable,
        Event::NodeReachable,
        Event::EmailVerified,
        Event::PasswordResetRequested,
        Event::PasswordReset,
        Event::NodeChanged,
        Event::KeyAdded,
        Event::KeyRemoved,
        Event::LimitHit,
        Event::Drift,
        Event::OrphanRemoved,
        Event::SliceRemade,
        Event::GatewaySession,
        Event::TerminalOpened,
        Event::SliceStart,
        Event::SliceStop,
        Event::SliceRestart,
        Event::SliceDestroy,
        Event::SliceWithdrawn,
        Event::TemplateChanged,
        Event::GatewayChanged,
        Event::CourseChanged,
        Event::ExtensionDecided,
        Event::SliceExpired,
        Event::ArchiveDownloaded,
        Event::DirectoryClash,
        Event::AccountLinked,
        Event::RosterImported,
        Event::RosterEntryRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::SignUp => "signup",
            Event::Login => "login",
            Event::LoginFailed => "login_failed",
            Event::LoginThrottled => "login_throttled",
            Event::Logout => "logout",
            Event::LogoutEverywhere => "logout_everywhere",
            Event::PasswordChanged => "password_changed",
            Event::RoleChanged => "role_changed",
            Event::AccountDisabled => "account_disabled",
            Event::AccountEnabled => "account_enabled",
            Event::AccountCreated => "account_created",
            Event::InviteCreated => "invite_created",
            Event::SliceApproved => "slice_approved",
            Event::SliceDenied => "slice_denied",
            Event::NodeUnreachable => "node_unreachable",
            Event::NodeReachable => "node_reachable",
            Event::EmailVerified => "email_verified",
            Event::PasswordResetRequested => "password_reset_requested",
            Event::PasswordReset => "password_reset",
            Event::NodeChanged => "node_changed",
            Event::KeyAdded => "key_added",
            Event::KeyRemoved => "key_removed",
            Event::LimitHit => "limit_hit",
            Event::Drift => "drift",
            Event::OrphanRemoved => "orphan_removed",
            Event::SliceRemade => "slice_remade",
            Event::GatewaySession => "gateway_session",
            Event::TerminalOpened => "terminal_opened",
            Event::SliceStart => "slice_start",
            Event::SliceStop => "slice_stop",
            Event::SliceRestart => "slice_restart",
            Event::SliceDestroy => "slice_destroy",
            Event::SliceWithdrawn => "slice_withdrawn",
            Event::TemplateChanged => "template_changed",
            Event::GatewayChanged => "gateway_changed",
            Event::CourseChanged => "course_changed",
            Event::ExtensionDecided => "extension_decided",
            Event::SliceExpired => "slice_expired",
            Event::ArchiveDownloaded => "archive_downloaded",
            Event::DirectoryClash => "directory_clash",
            Event::AccountLinked => "account_linked",
            Event::RosterImported => "roster_imported",
            Event::RosterEntryRemoved => "roster_entry_removed",
        }
    }

    /// In words, for the audit page.
    pub fn label(self) -> &'static str {
        match self {
            Event::SignUp => "Signed up",
            Event::Login => "Logged in",
            Event::LoginFailed => "Log-in failed",
            Event::LoginThrottled => "Log-in slowed",
            Event::Logout => "Logged out",
            Event::LogoutEverywhere => "Logged out everywhere",
            Event::PasswordChanged => "Password changed",
            Event::RoleChanged => "Role changed",
            Event::AccountDisabled => "Account disabled",
            Event::AccountEnabled => "Account enabled",
            Event::AccountCreated => "Account created",
            Event::InviteCreated => "Invite made",
            Event::SliceApproved => "Request approved",
            Event::SliceDenied => "Request denied",
            Event::NodeUnreachable => "Node stopped answering",
            Event::NodeReachable => "Node answers again",
            Event::EmailVerified => "Address confirmed",
            Event::PasswordResetRequested => "Password reset asked",
            Event::PasswordReset => "Password reset",
            Event::NodeChanged => "Node changed",
            Event::KeyAdded => "SSH key added",
            Event::KeyRemoved => "SSH key removed",
            Event::LimitHit => "Limit reached",
            Event::Drift => "Drift found",
            Event::OrphanRemoved => "Stray container removed",
            Event::SliceRemade => "Slice made again",
            Event::GatewaySession => "SSH session",
            Event::TerminalOpened => "Browser terminal opened",
            Event::SliceStart => "Start asked",
            Event::SliceStop => "Stop asked",
            Event::SliceRestart => "Restart asked",
            Event::SliceDestroy => "Destroy asked",
            Event::SliceWithdrawn => "Request withdrawn",
            Event::TemplateChanged => "Template changed",
            Event::GatewayChanged => "Gateway changed",
            Event::CourseChanged => "Course changed",
            Event::ExtensionDecided => "Extension decided",
            Event::SliceExpired => "Slice ended with its term",
            Event::ArchiveDownloaded => "Archive of /home downloaded",
            Event::DirectoryClash => "Directory log-in met a local account",
            Event::AccountLinked => "Account linked to the directory or single sign-on",
            Event::RosterImported => "Students put on a course roster",
            Event::RosterEntryRemoved => "Someone taken off a course roster",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Who did it, to what, from where.
#[derive(Debug, Clone, Default)]
pub struct Actor<'a> {
    pub user_id: Option<i64>,
    pub ip: &'a str,
}

/// Records one event.
pub fn record(
    conn: &Connection,
    event: Event,
    actor: &Actor<'_>,
    subject: Subject<'_>,
    detail: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, event, actor_id, subject_kind, subject, ip, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        now(),
        event.as_str(),
        actor.user_id,
        subject.kind(),
        subject.text(),
        actor.ip,
        detail
    ])?;
    Ok(())
}

/// How many `event`s there were at or after `since` for a subject and/or from an address,
/// and when the last one was.
pub fn count_since(
    conn: &Connection,
    event: Event,
    subject: Option<&str>,
    ip: Option<&str>,
    since: i64,
) -> Result<(u32, Option<i64>)> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), max(at) FROM audit WHERE event = ?1 AND at >= ?4
               AND (?2 IS NULL OR subject = ?2) AND (?3 IS NULL OR ip = ?3)",
        )?
        .query_row(params![event.as_str(), subject, ip, since], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
}

/// Whether `subject` had an `event` from `ip` before (a log-in from an address it used).
pub fn seen_from(conn: &Connection, event: Event, subject: &str, ip: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM audit WHERE event = ?1 AND subject = ?2 AND ip = ?3)",
        )?
        .query_row(params![event.as_str(), subject, ip], |r| r.get(0))?)
}

/// An account whose log-ins are being slowed: failures in the window, from how many
/// addresses, and the last one.
#[derive(Debug, Clone, Serialize)]
pub struct Slowed {
    pub subject: String,
    pub failures: u32,
    pub addresses: u32,
    pub last_at: i64,
}

/// The subjects with at least `min` `event`s since `since` (failed log-ins: the accounts
/// being slowed), most first.
pub fn slowed_accounts(
    conn: &Connection,
    event: Event,
    since: i64,
    min: u32,
) -> Result<Vec<Slowed>> {
    Ok(conn
        .prepare_cached(
            "SELECT subject, count(*), count(DISTINCT ip), max(at) FROM audit
              WHERE event = ?3 AND at >= ?1
              GROUP BY subject HAVING count(*) >= ?2
              ORDER BY count(*) DESC, subject LIMIT 100",
        )?
        .query_map(params![since, min, event.as_str()], |r| {
            Ok(Slowed {
                subject: r.get(0)?,
                failures: r.get(1)?,
                addresses: r.get(2)?,
                last_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub event: String,
    /// The event in words.
    pub label: &'static str,
    pub actor: Option<String>,
    /// `account`, `slice`, `node`, `container`, `template`, `gateway` or empty.
    pub subject_kind: String,
    pub subject: String,
    /// For a slice: its name, when it still has its row.
    pub subject_name: Option<String>,
    pub ip: String,
    pub detail: String,
}

/// Which events a page of the log shows: one kind, one subject (of a kind), or all.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub event: Option<Event>,
    pub kind: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// A page of the log, newest first.
pub fn list(
    conn: &Connection,
    filter: &Filter<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Entry>, u64)> {
    let ev = filter.event.map(Event::as_str);
    let (kind, subject) = (filter.kind, filter.subject);
    let total: u64 = conn
        .prepare_cached(
            "SELECT count(*) FROM audit WHERE (?1 IS NULL OR event = ?1)
               AND (?2 IS NULL OR subject_kind = ?2) AND (?3 IS NULL OR subject = ?3)",
        )?
        .query_row(params![ev, kind, subject], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.at, a.event, u.username, a.subject_kind, a.subject, s.subdomain, a.ip, a.detail
         FROM audit a LEFT JOIN users u ON u.id = a.actor_id
         LEFT JOIN slices s ON a.subject_kind = 'slice' AND s.id = CAST(a.subject AS INTEGER)
         WHERE (?1 IS NULL OR a.event = ?1) AND (?2 IS NULL OR a.subject_kind = ?2)
           AND (?3 IS NULL OR a.subject = ?3)
         ORDER BY a.id DESC LIMIT ?4 OFFSET ?5",
    )?;
    let rows = stmt
        .query_map(params![ev, kind, subject, limit, offset as i64], |r| {
            let event: String = r.get(2)?;
            Ok(Entry {
                id: r.get(0)?,
                at: r.get(1)?,
                label: Event::parse(&event).map(Event::label).unwrap_or("Other"),
                event,
                actor: r.get(3)?,
                subject_kind: r.get(4)?,
                subject: r.get(5)?,
                subject_name: r.get(6)?,
                ip: r.get(7)?,
                detail: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}
