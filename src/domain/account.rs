//! Account values: usernames, addresses, names, passwords, roles.

use std::fmt;

use serde::Serialize;

/// A value that failed its check: which form field, and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// A Unix login name: `^[a-z][a-z0-9_-]{1,31}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);
super::via_string!(Username);

impl Username {
    pub const FIELD: &'static str = "username";

    pub fn parse(raw: &str) -> Result<Username, FieldError> {
        let err = |m: &str| FieldError::new(Self::FIELD, m);
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("Choose a username."));
        }
        if s.len() < 2 || s.chars().count() > 32 {
            return Err(err("A username has 2 to 32 characters."));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            let lower = s.to_ascii_lowercase();
            if Self::valid(&lower) {
                return Err(FieldError::new(
                    Self::FIELD,
                    format!("Usernames are lowercase: try `{lower}`."),
                ));
            }
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(err("A username starts with a lowercase letter (a to z)."));
        }
        if !Self::valid(s) {
            return Err(err(
                "A username may use only lowercase letters, digits, `-` and `_`.",
            ));
        }
        Ok(Username(s.to_string()))
    }

    /// Names no person may take: the gateway makes a Unix account of every username, so a
    /// student must not get `root`, a Debian system account or a service's account (the
    /// gateway would refuse to touch it, and the student would never get in).
    pub const RESERVED: &'static [&'static str] = &[
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "sshd",
        "messagebus",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-coredump",
        "postfix",
        "postgres",
        "mysql",
        "redis",
        "nginx",
        "apache",
        "apache2",
        "ftp",
        "operator",
        "admin",
        "administrator",
        "adm",
        "wheel",
        "sudo",
        "staff",
        "users",
        "shadow",
        "utmp",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "cdrom",
        "audio",
        "video",
        "plugdev",
        "netdev",
        "input",
        "render",
        "kvm",
        "lxd",
        "incus",
        "docker",
        "ssl-cert",
        "crontab",
        "syslog",
        "tss",
        "uuidd",
        "dnsmasq",
        "avahi",
        "polkitd",
        "slices",
        "slices-gateway",
        "slices-agent",
        "gateway",
        "localhost",
        "postmaster",
        "hostmaster",
        "webmaster",
        "abuse",
        "security",
        "support",
        "noreply",
        "no-reply",
    ];

    /// Whether a checked name is one no person may take (`RESERVED`, or a system-style name
    /// such as `systemd-...` or `_apt`).
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED.contains(&self.0.as_str()) || self.0.starts_with("systemd-")
    }

    /// A name a person may sign up with: checked, and not reserved.
    pub fn parse_new(raw: &str) -> Result<Username, FieldError> {
        let u = Self::parse(raw)?;
        if u.is_reserved() {
            return Err(FieldError::new(
                Self::FIELD,
                format!("`{u}` is reserved for the system: choose another username."),
            ));
        }
        Ok(u)
    }

    fn valid(s: &str) -> bool {
        let b = s.as_bytes();
        (2..=32).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a plausible local part and a domain with a dot, no spaces or
/// control characters, at most 254 bytes. Kept as typed; compared without case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const FIELD: &'static str = "email";

    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let err = |m: &str| FieldError::new(Self::FIELD, m);
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("Enter your email address."));
        }
        if s.len() > 254 {
            return Err(err("That email address is too long."));
        }
        let bad = || err("That does not look like an email address (name@example.edu).");
        if has_control(s) || s.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(bad());
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's name as shown in pages and mail: 1 to 100 characters, no control characters
/// (so it can never break a mail header or a log line). HTML in it is escaped on output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const FIELD: &'static str = "display_name";

    pub fn parse(raw: &str) -> Result<DisplayName, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new(Self::FIELD, "Enter your name."));
        }
        if s.chars().count() > 100 {
            return Err(FieldError::new(
                Self::FIELD,
                "A name has at most 100 characters.",
            ));
        }
        if has_control(s) {
            return Err(FieldError::new(
                Self::FIELD,
                "A name cannot contain line breaks or control characters.",
            ));
        }
        Ok(DisplayName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The 10,000 most common passwords (SecLists' `10k-most-common.txt`, MIT licence; see
/// `data/README.md`), one per line, lowercased when read.
const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

fn common_passwords() -> &'static std::collections::HashSet<String> {
    static SET: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// A new password: 10 to 1,000 characters, at least 5 different ones, not one of the 10,000
/// most common passwords (nor one with only digits or symbols added around it), and without
/// the account's username or email address in it. Each refusal says which rule it broke.
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN: usize = 10;
    pub const MIN_DIFFERENT: usize = 5;

    /// Checks `raw` for the account named `username`, with `email` if it has (or asks for)
    /// one.
    pub fn parse(
        field: &'static str,
        raw: &str,
        username: &str,
        email: Option<&str>,
    ) -> Result<NewPassword, FieldError> {
        let refuse = |message: String| Err(FieldError::new(field, message));
        let n = raw.chars().count();
        if n < Self::MIN {
            return refuse(format!("A password has at least {} characters.", Self::MIN));
        }
        if n > 1000 {
            return refuse("A password has at most 1,000 characters.".into());
        }
        let different: std::collections::HashSet<char> = raw.chars().collect();
        if different.len() < Self::MIN_DIFFERENT || raw.trim().is_empty() {
            return refuse(format!(
                "A password needs at least {} different characters (not one repeated).",
                Self::MIN_DIFFERENT
            ));
        }
        let lower = raw.to_lowercase();
        let name = username.trim().to_lowercase();
        if name.chars().count() >= 3 && lower.contains(&name) {
            return refuse("A password cannot contain your username.".into());
        }
        if let Some(email) = email {
            let email = email.trim().to_lowercase();
            let local = email.split('@').next().unwrap_or_default();
            if !email.is_empty()
                && (lower.contains(&email) || (local.chars().count() >= 3 && lower.contains(local)))
            {
                return refuse("A password cannot contain your email address.".into());
            }
        }
        let core = lower.trim_matches(|c: char| !c.is_alphabetic());
        let common = common_passwords();
        if common.contains(lower.trim()) || (core.chars().count() >= 4 && common.contains(core)) {
            return refuse(
                "That is one of the most common passwords (or one with digits or symbols added), \
                 which attackers try first. A few unrelated words make a good one."
                    .into(),
            );
        }
        Ok(NewPassword(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(****)")
    }
}

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Staff,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Student, Role::Staff, Role::Admin];

    pub fn parse(raw: &str) -> Result<Role, FieldError> {
        match raw.trim() {
            "student" => Ok(Role::Student),
            "staff" => Ok(Role::Staff),
            "admin" => Ok(Role::Admin),
            _ => Err(FieldError::new(
                "role",
                "A role is student, staff or admin.",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    /// Staff pages: staff and admins.
    pub fn is_staff(self) -> bool {
        self >= Role::Staff
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["al", "alice", "a-b_c9", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "9lives",
            "-x",
            "al ice",
            "alice;rm",
            "$(id)",
            "../etc",
            "a\nb",
            "al\0ce",
            "abcdefghijklmnopqrstuvwxyz0123456",
            "ålice",
            "al.ice",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        let e = Username::parse("Alice").unwrap_err();
        assert!(e.message.contains("`alice`"), "{e}");
    }

    #[test]
    fn emails() {
        for ok in ["a@b.edu", "first.last+tag@cs.example.ac.uk"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.c",
            "a b@c.d",
            "a@b.c\r\nBcc: x@y.z",
            "<a@b.c>",
            ".a@b.c",
            "a@-b.c",
            "a@b..c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_passwords() {
        assert!(DisplayName::parse("<b>Ada</b> O'Neil; DROP TABLE users").is_ok());
        assert!(DisplayName::parse("Ada\r\nBcc: x").is_err());
        let u = Username::parse("alice").unwrap();
        let said = |raw: &str| {
            NewPassword::parse("password", raw, u.as_str(), Some("alice.smith@example.edu"))
                .err()
                .map(|e| e.message)
                .unwrap_or_default()
        };
        assert!(said("short").contains("at least 10"));
        assert!(
            said("password123").contains("most common"),
            "a common word and digits"
        );
        assert!(said("Password2024!").contains("most common"));
        assert!(said("1234567890").contains("most common"));
        assert!(said("qwertyuiop").contains("most common"));
        assert!(
            said("            ").contains("different characters"),
            "twelve spaces"
        );
        assert!(said("abababababab").contains("different characters"));
        assert!(said("i am ALICE, hello").contains("username"));
        assert!(said("alice.smith@example.edu").contains("username"));
        assert!(
            said("my smith@example.edu").is_empty(),
            "not the local part itself"
        );
        assert!(said("alice.smith.rocks").contains("username"));
        let bob = Username::parse("bob").unwrap();
        let mail = |raw: &str| {
            NewPassword::parse("password", raw, bob.as_str(), Some("jdoe@example.edu"))
                .err()
                .map(|e| e.message)
                .unwrap_or_default()
        };
        assert!(mail("jdoe is my name").contains("email"));
        assert_eq!(mail("correct horse battery"), "");
        assert_eq!(
            mail("monkeyfarm lane 7"),
            "",
            "a common word inside a longer one is fine"
        );
    }
}
