//! Mail: an outbox table written in the same transaction as the event that causes a message,
//! and a sender that delivers it (SMTP through lettre, or `.eml` files in the data folder)
//! with retries. A message is stored as its kind and data and rendered from a template when
//! sent or read, so what staff read in the outbox is exactly what goes out.

mod send;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;
use std::sync::OnceLock;

use crate::error::Result;
use crate::records::outbox;

pub use send::{build, requeue_sending, send_due, SendError, Transport};

/// The messages Slices sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    VerifyEmail,
    PasswordReset,
    NewRequest,
    Approved,
    Denied,
    SliceReady,
    ProvisioningFailedStaff,
    ProvisioningFailed,
    SliceStopped,
    SliceDestroyed,
    /// A slice was moved to another node or reinstalled (its address and host key changed).
    SliceMoved,
    RequestsDigest,
    LimitHit,
    /// A log-in from a new address after failed tries on the account.
    LoginAfterFailures,
    /// A slice's end is near (14, 3 or 1 day before).
    ExpiryWarning,
    /// A slice's end came: it is stopped and will be destroyed after the grace period.
    Expired,
    /// A student asked for more time (to staff).
    ExtensionAsked,
    /// Staff approved or denied a request for more time (to the student).
    ExtensionDecided,
    /// Staff put the person on a course's roster: how to get a slice for it.
    RosterInvite,
    Test,
}

impl Kind {
    pub const ALL: [Kind; 20] = [
        Kind::VerifyEmail,
        Kind::PasswordReset,
        Kind::NewRequest,
        Kind::Approved,
        Kind::Denied,
        Kind::SliceReady,
        Kind::ProvisioningFailedStaff,
        Kind::ProvisioningFailed,
        Kind::SliceStopped,
        Kind::SliceDestroyed,
        Kind::SliceMoved,
        Kind::RequestsDigest,
        Kind::LimitHit,
        Kind::LoginAfterFailures,
        Kind::ExpiryWarning,
        Kind::Expired,
        Kind::ExtensionAsked,
        Kind::ExtensionDecided,
        Kind::RosterInvite,
        Kind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerifyEmail => "verify_email",
            Kind::PasswordReset => "password_reset",
            Kind::NewRequest => "new_request",
            Kind::Approved => "approved",
            Kind::Denied => "denied",
            Kind::SliceReady => "slice_ready",
            Kind::ProvisioningFailedStaff => "provisioning_failed_staff",
            Kind::ProvisioningFailed => "provisioning_failed",
            Kind::SliceStopped => "slice_stopped",
            Kind::SliceDestroyed => "slice_destroyed",
            Kind::SliceMoved => "slice_moved",
            Kind::RequestsDigest => "requests_digest",
            Kind::LimitHit => "limit_hit",
            Kind::LoginAfterFailures => "login_after_failures",
            Kind::ExpiryWarning => "expiry_warning",
            Kind::Expired => "expired",
            Kind::ExtensionAsked => "extension_asked",
            Kind::ExtensionDecided => "extension_decided",
            Kind::RosterInvite => "roster_invite",
            Kind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What messages need to know about the site: where it is, and how students reach slices.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub base_url: String,
    pub domain: String,
    pub gateway_host: String,
    pub gateway_port: u16,
    /// Logins go through the master's built-in SSH gateway: one login name per slice (else
    /// the Unix-account gateway: one per student).
    pub builtin_ssh: bool,
    /// How many days a slice stays stopped after its end before it is destroyed.
    pub grace_days: u64,
    /// The master holds the hop keys (its own gateway folder), so it can open a terminal in
    /// the browser.
    pub terminal: bool,
}

impl Site {
    /// The site as configured, reached at `base_url`.
    pub fn new(c: &crate::config::Config, base_url: String) -> Site {
        Site {
            base_url,
            domain: c.domain.clone(),
            gateway_host: c.gateway_host.clone(),
            gateway_port: c.student_ssh_port(),
            builtin_ssh: matches!(c.builtin_ssh(), Ok(Some(_))),
            grace_days: c.term_grace_days,
            terminal: c.gateway_target.trim() == "local",
        }
    }

    /// The name a student logs in as to reach a slice: the slice's own name at the built-in
    /// gateway, their username at the Unix-account gateway.
    pub fn login_name<'a>(&self, username: &'a str, slice_name: &'a str) -> &'a str {
        if self.builtin_ssh {
            slice_name
        } else {
            username
        }
    }

    /// The exact command a student types to log in as `username`.
    pub fn ssh_command(&self, username: &str) -> String {
        if self.gateway_port == 22 {
            format!("ssh {username}@{}", self.gateway_host)
        } else {
            format!(
                "ssh -p {} {username}@{}",
                self.gateway_port, self.gateway_host
            )
        }
    }

    /// The web address of a slice. Under a `.localhost` domain (the embedded default) nothing
    /// but the master's built-in web gateway can answer it, so it carries the master's port.
    pub fn web_address(&self, subdomain: &str) -> String {
        let local = self.domain == "localhost" || self.domain.ends_with(".localhost");
        let port = self
            .base_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|host| host.rsplit_once(':'))
            .map(|(_, p)| p)
            .filter(|p| {
                local && !["", "0", "80"].contains(p) && p.chars().all(|c| c.is_ascii_digit())
            });
        match port {
            Some(p) => format!("http://{subdomain}.{}:{p}/", self.domain),
            None => format!("http://{subdomain}.{}/", self.domain),
        }
    }
}

macro_rules! mail_templates {
    ($($name:literal),* $(,)?) => {
        &[$( ($name, include_str!(concat!("../../templates/mail/", $name))), )*]
    };
}

const TEMPLATES: &[(&str, &str)] = mail_templates![
    "layout.html",
    "verify_email.txt",
    "password_reset.txt",
    "login_after_failures.txt",
    "new_request.txt",
    "approved.txt",
    "denied.txt",
    "slice_ready.txt",
    "provisioning_failed_staff.txt",
    "provisioning_failed.txt",
    "slice_stopped.txt",
    "limit_hit.txt",
    "slice_destroyed.txt",
    "slice_moved.txt",
    "requests_digest.txt",
    "expiry_warning.txt",
    "expired.txt",
    "extension_asked.txt",
    "extension_decided.txt",
    "roster_invite.txt",
    "test.txt",
];

fn tera() -> &'static tera::Tera {
    static T: OnceLock<tera::Tera> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = tera::Tera::default();
        t.autoescape_on(vec![".html"]);
        t.add_raw_templates(TEMPLATES.iter().copied())
            .expect("the mail templates compile");
        t
    })
}

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One line, no control characters, at most 200 characters: a subject can never carry a
/// header of its own.
pub fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = flat.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

/// Renders a message: `templates/mail/KIND.txt` starts with `Subject: ...` and a blank line;
/// the rest is the plain text, which `layout.html` also turns into the HTML part.
pub fn render(kind: Kind, data: &Value, site: &Site) -> std::result::Result<Rendered, tera::Error> {
    let mut ctx = tera::Context::from_value(data.clone()).unwrap_or_default();
    ctx.insert("site", site);
    if let Some(token) = data.get("token").and_then(Value::as_str) {
        let path = if kind == Kind::PasswordReset {
            "reset"
        } else {
            "verify"
        };
        ctx.insert("link", &format!("{}/{path}/{token}", site.base_url));
    }
    if let Some(slice) = data.get("slice") {
        if let Some(u) = slice.get("username").and_then(Value::as_str) {
            let name = slice.get("subdomain").and_then(Value::as_str).unwrap_or(u);
            ctx.insert("ssh", &site.ssh_command(site.login_name(u, name)));
        }
        if let Some(sub) = slice.get("subdomain").and_then(Value::as_str) {
            ctx.insert("web", &site.web_address(sub));
        }
    }
    let full = tera().render(&format!("{}.txt", kind.as_str()), &ctx)?;
    let (head, body) = full.split_once("\n\n").unwrap_or(("", &full));
    let subject = one_line(head.trim().strip_prefix("Subject:").unwrap_or(head));
    let text = body.trim().to_string() + "\n";
    let paragraphs: Vec<Vec<Part>> = text.split("\n\n").map(parts).collect();
    let mut hctx = tera::Context::new();
    hctx.insert("subject", &subject);
    hctx.insert("paragraphs", &paragraphs);
    let html = tera().render("layout.html", &hctx)?;
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

/// A piece of a paragraph for the HTML part: text, a link, or a command to copy.
#[derive(Serialize)]
struct Part {
    kind: &'static str,
    text: String,
}

fn parts(paragraph: &str) -> Vec<Part> {
    let mut out = Vec::new();
    for (i, line) in paragraph.lines().enumerate() {
        if i > 0 {
            out.push(Part {
                kind: "br",
                text: String::new(),
            });
        }
        // A command is a line indented by four spaces (as plain-text mail writes code): it
        // can be copied whole, with no prompt in front of it.
        if let Some(cmd) = line.strip_prefix("    ").filter(|c| !c.trim().is_empty()) {
            out.push(Part {
                kind: "code",
                text: cmd.trim().to_string(),
            });
            continue;
        }
        for (j, word) in line.split(' ').enumerate() {
            if j > 0 {
                push_text(&mut out, " ");
            }
            if word.starts_with("http://") || word.starts_with("https://") {
                out.push(Part {
                    kind: "link",
                    text: word.to_string(),
                });
            } else {
                push_text(&mut out, word);
            }
        }
    }
    out
}

/// Text joins the text before it: one part per run of words, not per word (each part costs
/// the layout a loop turn).
fn push_text(out: &mut Vec<Part>, text: &str) {
    match out.last_mut() {
        Some(Part {
            kind: "text",
            text: t,
        }) => t.push_str(text),
        _ => out.push(Part {
            kind: "text",
            text: text.to_string(),
        }),
    }
}

/// The message's data with its single-use token hidden, for showing to staff (a reset link
/// in the outbox would let a reader take over the account).
pub fn without_secrets(data: &Value) -> Value {
    let mut d = data.clone();
    if let Some(Value::String(t)) = d.get_mut("token") {
        *t = "(hidden)".into();
    }
    d
}

/// Writes a message into the outbox (call it inside the transaction of the event).
pub fn enqueue(
    conn: &Connection,
    kind: Kind,
    to_addr: &str,
    to_name: &str,
    data: Value,
    user_id: Option<i64>,
    slice_id: Option<i64>,
) -> Result<i64> {
    outbox::insert(
        conn,
        kind.as_str(),
        to_addr,
        to_name,
        &data,
        user_id,
        slice_id,
    )
}

/// A message to one user (by id), with `data` for the template.
pub fn to_user(
    conn: &Connection,
    kind: Kind,
    user_id: i64,
    mut data: Value,
    slice_id: Option<i64>,
) -> Result<i64> {
    let user = crate::records::users::by_id(conn, user_id)?
        .ok_or(crate::error::Error::NotFound("user"))?;
    if let Value::Object(m) = &mut data {
        m.insert(
            "user".into(),
            serde_json::json!({
                "username": user.username, "display_name": user.display_name, "email": user.email,
            }),
        );
    }
    enqueue(
        conn,
        kind,
        &user.email,
        &user.display_name,
        data,
        Some(user_id),
        slice_id,
    )
}

/// The same message to every enabled staff member and admin.
pub fn to_staff(
    conn: &Connection,
    kind: Kind,
    data: Value,
    slice_id: Option<i64>,
) -> Result<usize> {
    // For a new request, only those who want a mail for each (others get the daily digest,
    // or nothing).
    let each_only = kind == Kind::NewRequest;
    let ids = outbox::staff_recipients(conn, each_only)?;
    for id in &ids {
        to_user(conn, kind, *id, data.clone(), slice_id)?;
    }
    Ok(ids.len())
}

pub use crate::records::outbox::{get, list, retry, Message};

/// The daily digest of waiting requests, for staff who chose it and have not had today's
/// (`day` is the date, `YYYY-MM-DD`). Each is written with its record, in one transaction.
/// The UTC day of a Unix time, as YYYY-MM-DD (digests and daily alerts are per day).
pub fn day_of(t: i64) -> String {
    let d =
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub fn queue_digests(conn: &Connection, day: &str) -> Result<usize> {
    let waiting: Vec<Value> = crate::records::slice_lists::for_digest(conn)?
        .into_iter()
        .map(|(username, display_name, course, asked)| {
            serde_json::json!({
                "username": username,
                "display_name": display_name,
                "course": course,
                "asked": crate::clock::format_time(asked),
            })
        })
        .collect();
    if waiting.is_empty() {
        return Ok(0);
    }
    let staff = outbox::due_digest(conn, day)?;
    for id in &staff {
        outbox::note_digest(conn, *id, day)?;
        let data = serde_json::json!({ "count": waiting.len(), "requests": waiting });
        to_user(conn, Kind::RequestsDigest, *id, data, None)?;
    }
    Ok(staff.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            base_url: "https://slices.example.edu".into(),
            domain: "example.edu".into(),
            gateway_host: "gw.example.edu".into(),
            gateway_port: 22,
            builtin_ssh: false,
            grace_days: 14,
            terminal: false,
        }
    }

    #[test]
    fn every_template_renders_with_a_subject() {
        let data = serde_json::json!({
            "user": {"username": "alice", "display_name": "Alice <b>", "email": "a@example.edu"},
            "link": "https://slices.example.edu/verify/abc",
            "slice": {"id": 7, "hostname": "alice", "subdomain": "alice", "ip": "10.77.0.11",
                      "node": "node1", "template": "debian-12", "course": "CS", "purpose": "x"},
            "ssh": "ssh alice@gw.example.edu", "web": "http://alice.example.edu/",
            "reason": "no room", "student": {"username": "alice", "display_name": "Alice"},
            "log": [{"command": "create_env", "code": 1, "returned": "boom"}],
            "count": 2, "requests": [{"username": "bob", "display_name": "Bob", "course": "CS", "asked": "today"}],
            "resource": "memory", "resource_name": "memory", "hits": 3, "limit_text": "512 MB",
            "ip": "192.0.2.7", "failures": 6,
            "days": 3, "ends_day": "2026-12-18", "ends_time": "2026-12-19 00:00 UTC",
            "grace_days": 14, "destroy_day": "2027-01-02", "until_day": "2027-01-31",
            "approved": true, "note": "ok", "stopped": true,
            "course": "CS3650", "title": "Systems", "name": "Alice <b>", "email": "a@example.edu",
            "email_query": "a%40example.edu", "signup": true, "staff": "Tess",
        });
        for kind in Kind::ALL {
            let r = render(kind, &data, &site()).unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
            assert!(!r.subject.is_empty(), "{kind:?}");
            assert!(!r.text.trim().is_empty(), "{kind:?}");
            assert!(r.html.contains("<html"), "{kind:?}");
            assert!(
                !r.html.contains("Alice <b>"),
                "{kind:?}: names are escaped in HTML"
            );
        }
    }

    #[test]
    fn subjects_stay_one_line() {
        assert_eq!(one_line("a\r\nBcc: evil@x\tz"), "a Bcc: evil@x z");
        assert_eq!(one_line(&"x".repeat(500)).len(), 200);
    }
}
