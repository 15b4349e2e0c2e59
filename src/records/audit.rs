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
}

impl Event {
    pub const ALL: [Event; 28] = [
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
    subject: &str,
    detail: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, event, actor_id, subject, ip, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now(), event.as_str(), actor.user_id, subject, actor.ip, detail])?;
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
    pub actor: Option<String>,
    pub subject: String,
    pub ip: String,
    pub detail: String,
}

/// A page of the log, newest first, optionally only one event kind and/or one subject.
pub fn list(
    conn: &Connection,
    event: Option<Event>,
    subject: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Entry>, u64)> {
    let ev = event.map(Event::as_str);
    let total: u64 = conn.query_row(
        "SELECT count(*) FROM audit WHERE (?1 IS NULL OR event = ?1) AND (?2 IS NULL OR subject = ?2)",
        params![ev, subject],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.at, a.event, u.username, a.subject, a.ip, a.detail
         FROM audit a LEFT JOIN users u ON u.id = a.actor_id
         WHERE (?1 IS NULL OR a.event = ?1) AND (?2 IS NULL OR a.subject = ?2)
         ORDER BY a.id DESC LIMIT ?3 OFFSET ?4",
    )?;
    let rows = stmt
        .query_map(params![ev, subject, limit, offset as i64], |r| {
            Ok(Entry {
                id: r.get(0)?,
                at: r.get(1)?,
                event: r.get(2)?,
                actor: r.get(3)?,
                subject: r.get(4)?,
                ip: r.get(5)?,
                detail: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}
