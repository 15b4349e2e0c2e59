//! The difference between desired and actual: the changes, and the plan that holds them.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::*;
use crate::domain::{PrivateIp, SshPublicKey, Username};

/// One difference between the database and the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Account (where managed), home and `.ssh`.
    AddUser {
        user: Username,
    },
    /// A new hop key pair (none there, or its halves do not match what is recorded).
    HopKey {
        user: Username,
    },
    Script {
        user: Username,
        slice_id: i64,
        ip: PrivateIp,
        #[serde(skip)]
        text: String,
    },
    Keys {
        user: Username,
        count: usize,
        #[serde(skip)]
        text: String,
    },
    RemoveUser {
        user: Username,
    },
    Map {
        added: Vec<String>,
        removed: Vec<String>,
        #[serde(skip)]
        text: String,
    },
    /// The Slices block of sshd's configuration is missing or was changed.
    Sshd {
        missing: bool,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddUser { user } => write!(f, "+ {user}: account, home and .ssh"),
            Change::HopKey { user } => write!(f, "+ {user}: new hop key for the slice"),
            Change::Script {
                user, slice_id, ip, ..
            } => {
                write!(f, "~ {user}: login shell -> slice {slice_id} at {ip}")
            }
            Change::Keys { user, count, .. } => {
                write!(
                    f,
                    "~ {user}: authorized_keys ({count} key{})",
                    plural(*count)
                )
            }
            Change::RemoveUser { user } => write!(f, "- {user}: account, home, keys and script"),
            Change::Map { added, removed, .. } => {
                write!(f, "~ map:")?;
                for a in added {
                    write!(f, " +{a}")?;
                }
                for r in removed {
                    write!(f, " -{r}")?;
                }
                Ok(())
            }
            Change::Sshd { missing } => write!(
                f,
                "~ sshd: {} the block that stops slice users forwarding through the gateway",
                if *missing { "add" } else { "put back" }
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The changes that make the gateway match the database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Entries under the users folder that are not a valid username (left alone).
    pub unmanaged: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            writeln!(f, "The gateway matches the database: nothing to change.")?;
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for u in &self.unmanaged {
            writeln!(f, "? {u}: not a username Slices would make; left alone")?;
        }
        Ok(())
    }
}

/// Compares what should be with what is.
pub fn diff(s: &Settings, want: &Desired, have: &Actual, scope: &Scope) -> Plan {
    let mut plan = Plan::default();
    for (name, w) in &want.users {
        let a = have.users.get(name).cloned().unwrap_or_default();
        let user = w.username.clone();
        if !a.home || (have.accounts_managed && !a.account) {
            plan.changes.push(Change::AddUser { user: user.clone() });
        }
        // Both halves there, and the private one is the public one's pair (a lost or damaged
        // private key locks the student out as surely as a missing public one).
        let fingerprint = |k: &Option<String>| {
            k.as_deref()
                .and_then(|k| SshPublicKey::parse(k.trim()).ok())
                .map(|k| k.fingerprint())
        };
        let hop_ok = fingerprint(&a.hop_public)
            .is_some_and(|public| fingerprint(&a.hop_private) == Some(public));
        if !hop_ok {
            plan.changes.push(Change::HopKey { user: user.clone() });
        }
        let script = login_script(s, w);
        if a.script.as_deref() != Some(script.as_str()) {
            plan.changes.push(Change::Script {
                user: user.clone(),
                slice_id: w.slice_id,
                ip: w.ip,
                text: script,
            });
        }
        let keys = render::authorized_keys(&w.keys);
        if a.keys.as_deref() != Some(keys.as_str()) {
            plan.changes.push(Change::Keys {
                user,
                count: w.keys.len(),
                text: keys,
            });
        }
    }
    for name in have.users.keys() {
        if want.users.contains_key(name) {
            continue;
        }
        if !scope.covers(name) {
            continue;
        }
        match Username::parse(name) {
            Ok(user) if user.as_str() == name => plan.changes.push(Change::RemoveUser { user }),
            _ => plan.unmanaged.push(name.clone()),
        }
    }
    let map = want.map_given(have);
    let text = map_text(&map);
    if have.map.as_deref() != Some(text.as_str()) {
        let old: BTreeSet<String> = have
            .map
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let new: BTreeSet<String> = map.iter().map(|(n, ip)| format!("{n} {ip}")).collect();
        plan.changes.push(Change::Map {
            added: new.difference(&old).cloned().collect(),
            removed: old.difference(&new).cloned().collect(),
            text,
        });
    }
    // A gateway with sshd gets the block that keeps slice users from forwarding through it.
    if let Some(current) = &have.sshd {
        if *current != super::sshd_block() {
            plan.changes.push(Change::Sshd {
                missing: current.trim().is_empty(),
            });
        }
    }
    plan
}
