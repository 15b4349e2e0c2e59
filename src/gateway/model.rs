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

/// A place the gateway's files and accounts are kept.
pub trait Target: Send {
    /// Reads the managed state: every user under the users folder, or only `only`.
    fn read(&mut self, only: Option<&Username>) -> anyhow::Result<Actual>;
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
    /// `(subdomain, ip)`, sorted by name.
    pub map: Vec<(String, PrivateIp)>,
}

/// Which users a run looks at. The map is always compared whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    User(Username),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::User(u) => write!(f, "{u}"),
        }
    }
}
