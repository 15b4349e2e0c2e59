//! The gateway host: students `ssh gateway` and land in their slice; `NAME.<domain>` reaches
//! the web server in it. For every user with a live slice the gateway holds (the seed's
//! "Accessing Virtual Environments" and "Apache" sections):
//!
//! - a Unix account USER whose login shell is `USERS_DIR/USER.sh`, a script that runs
//!   `exec ssh -i KEY USER@PRIVATE_IP` and passes a command, scp and sftp through;
//! - a home `USERS_DIR/USER/` with `.ssh/authorized_keys` (the student's own keys, from the web
//!   interface), `.ssh/slice_ed25519` (the hop key: private half only here, owned by USER,
//!   0600; its public half goes into the slice through the agent) and `.ssh/known_hosts`;
//! - a line `NAME PRIVATE_IP` in Apache's RewriteMap, written atomically.
//!
//! The master keeps it right by reconciliation: the desired state comes from the database
//! ([`desired`]), the actual state is read from the target ([`Target::read`]), and only the
//! difference ([`Plan`]) is applied. Applying twice changes nothing. Targets: [`ssh::SshTarget`]
//! (a real host, over SSH with ssh2) and [`local::LocalTarget`] (the same files under the data
//! folder, no Unix accounts: the embedded default).

pub mod local;
mod render;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::Config;
use crate::domain::{PrivateIp, SshPublicKey, Username};
use crate::store::{now, Db};

pub use render::{apache_config, login_script, map_text};
pub use ssh::{helper, offered_host_key};

/// A path on the gateway host: absolute, of plain characters only (it reaches command lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath(String);

impl RemotePath {
    pub fn parse(s: &str) -> Result<RemotePath, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
        if !s.starts_with('/') || s.len() < 2 || s.len() > 200 || !ok_chars {
            return Err(format!(
                "`{s}` must be an absolute path of letters, digits, `/`, `.`, `_` and `-`"
            ));
        }
        if s.split('/').any(|part| part == ".." || part == ".") || s.ends_with('/') {
            return Err(format!(
                "`{s}` must not contain `.` or `..` parts or end in `/`"
            ));
        }
        Ok(RemotePath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the gateway is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Files under a folder of the master (DATA/gateway), no Unix accounts.
    Local(PathBuf),
    /// A host reached over SSH as `user` (root: it makes accounts).
    Ssh {
        user: String,
        host: String,
        port: u16,
    },
}

impl TargetSpec {
    pub fn parse(s: &str, data: &std::path::Path) -> Result<TargetSpec, String> {
        if s == "local" {
            return Ok(TargetSpec::Local(data.join("gateway")));
        }
        let rest = s.strip_prefix("ssh://").ok_or_else(|| {
            format!("gateway_target `{s}`: use `local` or `ssh://root@HOST[:PORT]`")
        })?;
        let (user, hostport) = rest
            .split_once('@')
            .ok_or_else(|| format!("gateway_target `{s}`: name the account, as ssh://root@HOST"))?;
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("gateway_target `{s}`: bad port `{p}`"))?,
            ),
            None => (hostport, 22),
        };
        let plain = |t: &str| {
            !t.is_empty()
                && t.len() <= 253
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        };
        if !plain(user) || !plain(host) {
            return Err(format!(
                "gateway_target `{s}`: the account and host are letters, digits, `.`, `-` and `_`"
            ));
        }
        Ok(TargetSpec::Ssh {
            user: user.into(),
            host: host.into(),
            port,
        })
    }
}

/// The gateway settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: TargetSpec,
    pub users_dir: RemotePath,
    pub map_file: RemotePath,
    /// The pinned host key fingerprint (`SHA256:...`), if set.
    pub host_key: Option<String>,
    /// Where the pin comes from: the configuration, or staff who accepted it in the web
    /// interface (only when the configuration sets none).
    pub host_key_source: &'static str,
    /// The master's private key for the SSH target.
    pub key_file: PathBuf,
    /// Where the helper is installed on the gateway (used when not logging in as root).
    pub helper: RemotePath,
}

impl Settings {
    pub fn from_config(c: &Config) -> anyhow::Result<Settings> {
        let users_dir = RemotePath::parse(&c.gateway_users_dir)
            .map_err(|e| anyhow!("gateway_users_dir: {e}"))?;
        let map_file =
            RemotePath::parse(&c.gateway_map_file).map_err(|e| anyhow!("gateway_map_file: {e}"))?;
        let host_key = match c.gateway_host_key.trim() {
            "" => None,
            k if valid_fingerprint(k) => Some(k.to_string()),
            k => bail!(
                "gateway_host_key `{k}`: give the SHA256:... fingerprint (ssh-keygen -lf KEY)"
            ),
        };
        Ok(Settings {
            target: TargetSpec::parse(&c.gateway_target, &c.data).map_err(|e| anyhow!(e))?,
            users_dir,
            map_file,
            host_key_source: if host_key.is_some() {
                "the configuration"
            } else {
                ""
            },
            host_key,
            helper: RemotePath::parse(&c.gateway_helper)
                .map_err(|e| anyhow!("gateway_helper: {e}"))?,
            key_file: c
                .gateway_key
                .clone()
                .unwrap_or_else(|| c.data.join("gateway").join("master_ed25519")),
        })
    }

    pub fn script(&self, u: &Username) -> String {
        format!("{}/{u}.sh", self.users_dir)
    }
    pub fn home(&self, u: &Username) -> String {
        format!("{}/{u}", self.users_dir)
    }
    pub fn file(&self, u: &Username, f: UserFile) -> String {
        match f {
            UserFile::Script => self.script(u),
            other => format!("{}/{}", self.home(u), other.in_home()),
        }
    }
    pub fn describe(&self) -> String {
        match &self.target {
            TargetSpec::Local(p) => format!("local files under {}", p.display()),
            TargetSpec::Ssh { user, host, port } => format!("ssh://{user}@{host}:{port}"),
        }
    }
}

/// A host key fingerprint as `ssh-keygen -l` prints it: `SHA256:` and 43 base64 characters.
pub fn valid_fingerprint(k: &str) -> bool {
    k.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

impl Settings {
    /// The settings with the database's accepted host key when the configuration pins none.
    pub fn load(c: &Config, db: &Db) -> anyhow::Result<Settings> {
        let mut s = Settings::from_config(c)?;
        if s.host_key.is_none() {
            let accepted: Option<String> = db
                .read(|conn| {
                    Ok::<_, crate::error::Error>(
                        conn.query_row(
                            "SELECT value FROM settings WHERE key = 'gateway_host_key'",
                            [],
                            |r| r.get(0),
                        )
                        .optional()?,
                    )
                })
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(k) = accepted.filter(|k| valid_fingerprint(k)) {
                s.host_key = Some(k);
                s.host_key_source = "staff, in the web interface";
            }
        }
        Ok(s)
    }
}

/// Staff accept the host key the gateway offers (when the configuration pins none).
pub fn accept_host_key(conn: &Connection, fingerprint: &str, by: i64) -> crate::error::Result<()> {
    if !valid_fingerprint(fingerprint) {
        return Err(crate::domain::FieldError::new(
            "fingerprint",
            "That is not a SHA256 host key fingerprint.",
        )
        .into());
    }
    conn.execute(
        "INSERT OR REPLACE INTO settings (key, value, set_by, set_at) VALUES ('gateway_host_key', ?1, ?2, ?3)",
        params![fingerprint, by, now()],
    )?;
    Ok(())
}

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
}

/// What the gateway holds (for all users, or the ones asked about).
#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub users: BTreeMap<String, ActualUser>,
    pub map: Option<String>,
    /// Whether the target makes Unix accounts (the local target does not).
    pub accounts_managed: bool,
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
}

/// A place the gateway's files and accounts are kept.
pub trait Target: Send {
    /// Reads the managed state: every user under the users folder, or only `only`.
    fn read(&mut self, only: Option<&Username>) -> anyhow::Result<Actual>;
    /// Does a batch of changes.
    fn apply(&mut self, batch: &Batch) -> anyhow::Result<()>;
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

/// The slices the gateway serves: placed, not on their way out, of users not disabled. When a
/// user has several, the login goes to the running one made last.
pub fn desired(conn: &Connection, only: Option<&Username>) -> crate::error::Result<Desired> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, u.username, s.ip, s.subdomain, s.state
           FROM slices s JOIN users u ON u.id = s.user_id
          WHERE s.state IN ('provisioning', 'running', 'stopped')
            AND s.ip IS NOT NULL AND s.node_id IS NOT NULL AND u.disabled_at IS NULL
          ORDER BY (s.state = 'running'), s.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut d = Desired::default();
    let mut map = BTreeMap::new();
    for row in rows {
        let (slice_id, name, ip, subdomain) = row?;
        // Values were checked when written; a row that no longer parses is left out (and
        // logged) rather than written to a host.
        let (Ok(username), Ok(ip)) = (Username::parse(&name), PrivateIp::parse(&ip)) else {
            tracing::warn!(
                slice_id,
                "gateway: skipping a slice with a bad username or address"
            );
            continue;
        };
        if render::valid_label(&subdomain) {
            map.insert(subdomain, ip);
        }
        if only.is_some_and(|o| *o != username) {
            continue;
        }
        // Later rows win: running ones come last, newest last.
        d.users.insert(
            name,
            Want {
                username,
                slice_id,
                ip,
                keys: vec![],
            },
        );
    }
    d.map = map.into_iter().collect();
    let mut keys = conn.prepare_cached(
        "SELECT u.username, k.key FROM ssh_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id",
    )?;
    let rows = keys.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (name, key) = row?;
        if let (Some(w), Ok(k)) = (d.users.get_mut(&name), SshPublicKey::parse(&key)) {
            w.keys.push(k);
        }
    }
    Ok(d)
}

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
        let hop_ok = a
            .hop_public
            .as_deref()
            .is_some_and(|k| SshPublicKey::parse(k).is_ok());
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
        if let Scope::User(u) = scope {
            if u.as_str() != name {
                continue;
            }
        }
        match Username::parse(name) {
            Ok(user) if user.as_str() == name => plan.changes.push(Change::RemoveUser { user }),
            _ => plan.unmanaged.push(name.clone()),
        }
    }
    let text = map_text(&want.map);
    if have.map.as_deref() != Some(text.as_str()) {
        let old: BTreeSet<String> = have
            .map
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let new: BTreeSet<String> = want.map.iter().map(|(n, ip)| format!("{n} {ip}")).collect();
        plan.changes.push(Change::Map {
            added: new.difference(&old).cloned().collect(),
            removed: old.difference(&new).cloned().collect(),
            text,
        });
    }
    plan
}

/// The outcome of an apply.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scope: String,
    pub plan: Plan,
    pub duration_ms: u64,
    /// Users whose hop key is new: their slices need its public half.
    pub new_hop_keys: Vec<String>,
}

/// The gateway as the master uses it: one target, one run at a time.
pub struct Gateway {
    settings: Settings,
    target: Mutex<Option<Box<dyn Target>>>,
}

impl Gateway {
    pub fn from_config(c: &Config) -> anyhow::Result<Gateway> {
        Ok(Gateway::new(Settings::from_config(c)?))
    }

    /// With a host key staff accepted, when the configuration pins none.
    pub fn load(c: &Config, db: &Db) -> anyhow::Result<Gateway> {
        Ok(Gateway::new(Settings::load(c, db)?))
    }

    pub fn new(settings: Settings) -> Gateway {
        Gateway {
            settings,
            target: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn with_target<T>(
        &self,
        f: impl FnOnce(&mut dyn Target) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        // One run at a time in this process, whatever Gateway value it goes through.
        static RUNS: Mutex<()> = Mutex::new(());
        let _run = RUNS.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.connect()?);
        }
        let result = f(slot.as_mut().expect("connected").as_mut());
        if result.is_err() {
            // The next run connects afresh (the connection may be what failed).
            *slot = None;
        }
        result
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Target>> {
        Ok(match &self.settings.target {
            TargetSpec::Local(root) => Box::new(local::LocalTarget::new(root, &self.settings)?),
            TargetSpec::Ssh { .. } => Box::new(ssh::SshTarget::connect(&self.settings)?),
        })
    }

    /// The difference, without changing anything.
    pub fn plan(&self, db: &Db, scope: &Scope) -> anyhow::Result<Plan> {
        self.with_target(|t| {
            let want = self.want(db, scope)?;
            let have = t.read(only(scope))?;
            Ok(diff(&self.settings, &want, &have, scope))
        })
    }

    fn want(&self, db: &Db, scope: &Scope) -> anyhow::Result<Desired> {
        Ok(db.read(|c| desired(c, only(scope)))?)
    }

    /// Makes the gateway match the database, records the run, and queues new hop keys for the
    /// slices that need them.
    pub fn apply(&self, db: &Db, scope: &Scope) -> anyhow::Result<Report> {
        let started = Instant::now();
        let result = self.apply_inner(db, scope);
        let ms = started.elapsed().as_millis() as u64;
        let (ok, changes, summary, error) = match &result {
            Ok((plan, _)) => (true, plan.changes.len(), plan.to_string(), String::new()),
            Err(e) => (false, 0, String::new(), format!("{e:#}")),
        };
        let scope_text = scope.to_string();
        db.write(|tx| {
            tx.execute(
                "INSERT INTO gateway_runs (at, scope, ok, changes, summary, error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now(),
                    scope_text,
                    ok,
                    changes as i64,
                    summary,
                    error,
                    ms as i64
                ],
            )?;
            // Keep the last thousand runs.
            tx.execute(
                "DELETE FROM gateway_runs WHERE id <= (SELECT max(id) - 1000 FROM gateway_runs)",
                [],
            )?;
            Ok::<_, crate::error::Error>(())
        })?;
        let (plan, new_hop_keys) = result?;
        Ok(Report {
            scope: scope.to_string(),
            plan,
            duration_ms: ms,
            new_hop_keys,
        })
    }

    fn apply_inner(&self, db: &Db, scope: &Scope) -> anyhow::Result<(Plan, Vec<String>)> {
        let (want, plan, hop_keys) = self.with_target(|t| {
            // Read inside the lock: a run that read the database before another run changed
            // the gateway would undo that run's work.
            let want = self.want(db, scope)?;
            let have = t.read(only(scope))?;
            let plan = diff(&self.settings, &want, &have, scope);
            let mut hop: BTreeMap<String, String> = have
                .users
                .iter()
                .filter_map(|(n, a)| a.hop_public.clone().map(|k| (n.clone(), k)))
                .collect();
            execute(t, &plan, &mut hop)?;
            Ok((want, plan, hop))
        })?;
        // Record each served user's hop key; queue it for their slices when it changed.
        let mut new_keys = Vec::new();
        let removed: Vec<String> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::RemoveUser { user } => Some(user.to_string()),
                _ => None,
            })
            .collect();
        db.write(|tx| {
            for name in want.users.keys() {
                let Some(key) = hop_keys.get(name) else {
                    continue;
                };
                let key = key.trim();
                let old: Option<Option<String>> = tx
                    .query_row(
                        "SELECT hop_key FROM users WHERE username = ?1",
                        [name],
                        |r| r.get(0),
                    )
                    .optional()?;
                if old.flatten().as_deref() != Some(key) {
                    tx.execute(
                        "UPDATE users SET hop_key = ?2 WHERE username = ?1",
                        params![name, key],
                    )?;
                    new_keys.push(name.clone());
                    queue_keys(tx, name)?;
                }
            }
            for name in &removed {
                tx.execute(
                    "UPDATE users SET hop_key = NULL WHERE username = ?1",
                    [name],
                )?;
            }
            Ok::<_, crate::error::Error>(())
        })?;
        Ok((plan, new_keys))
    }
}

fn only(scope: &Scope) -> Option<&Username> {
    match scope {
        Scope::All => None,
        Scope::User(u) => Some(u),
    }
}

/// Runs a plan against a target. `hop` holds each user's hop public key (new ones added).
fn execute(
    t: &mut dyn Target,
    plan: &Plan,
    hop: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let mut batch = Batch::default();
    for c in &plan.changes {
        match c {
            Change::AddUser { user } => {
                batch.add.push(user.clone());
                batch
                    .files
                    .push((user.clone(), UserFile::KnownHosts, vec![]));
            }
            Change::HopKey { user } => {
                let (private, public) = hop_key_pair(user)?;
                batch
                    .files
                    .push((user.clone(), UserFile::HopPrivate, private.into_bytes()));
                batch.files.push((
                    user.clone(),
                    UserFile::HopPublic,
                    public.clone().into_bytes(),
                ));
                hop.insert(user.to_string(), public);
            }
            Change::Script { user, text, .. } => {
                batch
                    .files
                    .push((user.clone(), UserFile::Script, text.clone().into_bytes()))
            }
            Change::Keys { user, text, .. } => batch.files.push((
                user.clone(),
                UserFile::AuthorizedKeys,
                text.clone().into_bytes(),
            )),
            Change::RemoveUser { user } => {
                batch.remove.push(user.clone());
                hop.remove(user.as_str());
            }
            Change::Map { text, .. } => batch.map = Some(text.clone()),
        }
    }
    if !plan.changes.is_empty() {
        t.apply(&batch)?;
    }
    Ok(())
}

/// A new ed25519 key pair in OpenSSH format: (private, public line).
fn hop_key_pair(user: &Username) -> anyhow::Result<(String, String)> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| anyhow!("making a key: {e}"))?;
    key.set_comment(format!("slices-hop-{user}"));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| anyhow!("encoding a key: {e}"))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding a key: {e}"))?;
    Ok((private, format!("{public}\n")))
}

/// Queues a job that gives each of the user's slices on a node its current keys.
fn queue_keys(tx: &Connection, username: &str) -> crate::error::Result<()> {
    let mut stmt = tx.prepare_cached(
        "SELECT s.id, s.user_id, s.node_id FROM slices s JOIN users u ON u.id = s.user_id
          WHERE u.username = ?1 AND s.state IN ('running', 'stopped') AND s.node_id IS NOT NULL",
    )?;
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map([username], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (slice, user, node) in rows {
        crate::jobs::enqueue(
            tx,
            crate::jobs::JobKind::Keys,
            slice,
            Some(user),
            Some(node),
        )?;
    }
    Ok(())
}

/// Queues a gateway run for one user (after their keys, slices or account changed).
pub fn queue_user(tx: &Connection, user_id: i64) -> crate::error::Result<()> {
    crate::jobs::enqueue_gateway(tx, Some(user_id))?;
    Ok(())
}

/// The last runs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub at: i64,
    pub scope: String,
    pub ok: bool,
    pub changes: i64,
    pub summary: String,
    pub error: String,
    pub duration_ms: i64,
}

pub fn runs(conn: &Connection, limit: i64) -> crate::error::Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, scope, ok, changes, summary, error, duration_ms FROM gateway_runs
          ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok(Run {
                id: r.get(0)?,
                at: r.get(1)?,
                scope: r.get(2)?,
                ok: r.get(3)?,
                changes: r.get(4)?,
                summary: r.get(5)?,
                error: r.get(6)?,
                duration_ms: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The master's key for the SSH target: read, or made (0600) when it is the default path and
/// missing. Returns the public line for the gateway's `authorized_keys`.
pub fn master_key(s: &Settings) -> anyhow::Result<String> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let path = &s.key_file;
    let key = match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.trim_end())
            .map_err(|e| anyhow!("{}: not an OpenSSH private key: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| anyhow!("making a key: {e}"))?;
            key.set_comment("slices-master");
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| anyhow!("encoding a key: {e}"))?;
            write_private(path, text.as_bytes())?;
            key
        }
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    key.public_key()
        .to_openssh()
        .map_err(|e| anyhow!("encoding a key: {e}"))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}
