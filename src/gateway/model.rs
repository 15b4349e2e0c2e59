//! What a gateway holds, as the master reads and writes it: users, their files, the actual and desired states, and the `Target` trait each kind of gateway implements.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::{PrivateIp, SshPublicKey, Username};

/// The files the master writes for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFile {
    Script,
    AuthorizedKeys,
    HopPrivate,
    HopPublic,
    /// Written empty when the account is made; ssh records the slice's host key in it.
    KnownHosts,
}

impl UserFile {
    /// The path inside the home (the script lives beside the homes).
    pub fn in_home(self) -> &'static str {
        match self {
            UserFile::Script => "",
            UserFile::AuthorizedKeys => ".ssh/authorized_keys",
            UserFile::HopPrivate => ".ssh/slice_ed25519",
            UserFile::HopPublic => ".ssh/slice_ed25519.pub",
            UserFile::KnownHosts => ".ssh/known_hosts",
        }
    }
    pub fn mode(self) -> u32 {
        match self {
            UserFile::Script => 0o755,
            UserFile::HopPrivate | UserFile::KnownHosts => 0o600,
            _ => 0o644,
        }
    }
    /// Owned by the user (else by root): the private key, which ssh must read as them, and
    /// known_hosts, which it writes.
    pub fn user_owned(self) -> bool {
        matches!(self, UserFile::HopPrivate | UserFile::KnownHosts)
    }
}

/// What one user has on the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualUser {
    pub account: bool,
    pub home: bool,
    pub script: Option<String>,
    pub keys: Option<String>,
    pub hop_public: Option<String>,
    /// The public key the private hop key on the gateway derives to, when there is one (the
    /// private key itself never leaves the gateway).
    pub hop_private: Option<String>,
}

/// What the gateway holds (for all users, or the ones asked about).
#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub users: BTreeMap<String, ActualUser>,
    pub map: Option<String>,
    /// Whether the target makes Unix accounts (the local target does not).
    pub accounts_managed: bool,
    /// The Slices block of the gateway's sshd configuration as it is (None: the target has
    /// no sshd to keep, as the local one).
    pub sshd: Option<String>,
}

/// What one apply does, in this order: make accounts (where the target has them), homes and
/// `.ssh` folders; write files (each replaced whole, with its mode and owner); replace the map
/// atomically (a temporary file renamed over it); remove users (account, home and script).
#[derive(Debug, Default)]
pub struct Batch {
    pub add: Vec<Username>,
    pub files: Vec<(Username, UserFile, Vec<u8>)>,
    pub map: Option<String>,
    pub remove: Vec<Username>,
    /// Put the Slices block back in sshd's configuration.
    pub sshd: bool,
}

impl Batch {
    /// Writes `file` of `user` once in this batch, with the last contents asked for (a new
    /// user's empty known_hosts and the one its first script asks for are one write). A plan
    /// lists each user's changes together, so only the user's own entries at the end are
    /// looked at (a run for 20,000 users stays linear).
    pub fn file(&mut self, user: &Username, file: UserFile, bytes: Vec<u8>) {
        let earlier = self
            .files
            .iter_mut()
            .rev()
            .take_while(|(u, _, _)| u == user)
            .find(|(_, f, _)| *f == file);
        match earlier {
            Some(entry) => entry.2 = bytes,
            None => self.files.push((user.clone(), file, bytes)),
        }
    }
}

/// A place the gateway's files and accounts are kept.
pub trait Target: Send {
    /// Reads the managed state: every user under the users folder, or only these.
    fn read(&mut self, only: Option<&[Username]>) -> anyhow::Result<Actual>;
    /// Does a batch of changes; says which new users it had to leave out.
    fn apply(&mut self, batch: &Batch) -> anyhow::Result<Applied>;
}

/// What an apply could not do for some users while it did the rest.
#[derive(Debug, Default)]
pub struct Applied {
    /// New users left out (with their files): an account of that name exists on the gateway
    /// and is not one Slices made.
    pub clashes: Vec<String>,
}

/// What a user with a live slice should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub username: Username,
    pub slice_id: i64,
    pub ip: PrivateIp,
    pub keys: Vec<SshPublicKey>,
}

#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub users: BTreeMap<String, Want>,
    /// `(subdomain, ip)`, sorted by name: the whole map (a run for all users).
    pub map: Vec<(String, PrivateIp)>,
    /// A run for some users reads only the map lines their slices' names could hold (None:
    /// the line goes); the others are the gateway's as they are, until a run for all.
    pub map_lines: Option<BTreeMap<String, Option<PrivateIp>>>,
}

impl Desired {
    /// The whole map this run wants, given what the gateway holds.
    pub fn map_given(&self, have: &Actual) -> Vec<(String, PrivateIp)> {
        let Some(lines) = &self.map_lines else {
            return self.map.clone();
        };
        let mut map: BTreeMap<String, PrivateIp> = have
            .map
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter_map(|l| {
                let (name, ip) = l.trim().split_once(' ')?;
                let ip = PrivateIp::parse(ip.trim()).ok()?;
                super::render::valid_label(name).then(|| (name.to_string(), ip))
            })
            .collect();
        for (name, ip) in lines {
            match ip {
                Some(ip) => map.insert(name.clone(), *ip),
                None => map.remove(name),
            };
        }
        map.into_iter().collect()
    }
}

/// Which users a run looks at. The map is always compared whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    User(Username),
    /// Several users, sorted and each once: the runs asked for while another ran, done as one.
    Users(Vec<Username>),
}

impl Scope {
    /// The users looked at (None: all of them).
    pub fn users(&self) -> Option<&[Username]> {
        match self {
            Scope::All => None,
            Scope::User(u) => Some(std::slice::from_ref(u)),
            Scope::Users(us) => Some(us),
        }
    }

    /// Whether a run of this scope looks at `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.users()
            .is_none_or(|us| us.iter().any(|u| u.as_str() == name))
    }

    /// One scope that covers both.
    pub fn merge(self, other: Scope) -> Scope {
        match (self.users(), other.users()) {
            (Some(a), Some(b)) => {
                let mut all: Vec<Username> = a.iter().chain(b).cloned().collect();
                all.sort_by(|x, y| x.as_str().cmp(y.as_str()));
                all.dedup();
                match all.len() {
                    1 => Scope::User(all.remove(0)),
                    _ => Scope::Users(all),
                }
            }
            _ => Scope::All,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMED: usize = 5;
        match self {
            Scope::All => f.write_str("all"),
            Scope::User(u) => write!(f, "{u}"),
            Scope::Users(us) => {
                let names: Vec<&str> = us.iter().take(NAMED).map(|u| u.as_str()).collect();
                write!(f, "{}", names.join(", "))?;
                if us.len() > NAMED {
                    write!(f, " and {} more", us.len() - NAMED)?;
                }
                Ok(())
            }
        }
    }
}
