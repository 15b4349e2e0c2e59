//! Applying a plan: the `Gateway` (one run at a time), its report, the record of runs, and the jobs a run queues.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

use super::*;
use crate::config::Config;
use crate::domain::Username;
use crate::records::gateway as records;
pub use crate::records::gateway::{runs, Run};
use crate::store::Db;

/// The outcome of an apply.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scope: String,
    pub plan: Plan,
    pub duration_ms: u64,
    /// Users whose hop key is new: their slices need its public half.
    pub new_hop_keys: Vec<String>,
    /// Users left out: an account of their name exists on the gateway, not made by Slices.
    pub clashes: Vec<String>,
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
            Ok((plan, _, clashes)) => {
                let mut summary = plan.to_string();
                for c in clashes {
                    summary.push_str(&format!(
                        "\n! {c}: left out, an account of that name exists on the gateway"
                    ));
                }
                (true, plan.changes.len(), summary, String::new())
            }
            Err(e) => (false, 0, String::new(), format!("{e:#}")),
        };
        let scope_text = scope.to_string();
        db.write(|tx| {
            records::record_run(
                tx,
                &scope_text,
                ok,
                changes as i64,
                &summary,
                &error,
                ms as i64,
            )
        })?;
        let (plan, new_hop_keys, clashes) = result?;
        Ok(Report {
            scope: scope.to_string(),
            plan,
            duration_ms: ms,
            new_hop_keys,
            clashes,
        })
    }

    #[allow(clippy::type_complexity)]
    fn apply_inner(
        &self,
        db: &Db,
        scope: &Scope,
    ) -> anyhow::Result<(Plan, Vec<String>, Vec<String>)> {
        let (want, plan, hop_keys, applied) = self.with_target(|t| {
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
            let applied = execute(t, &plan, &mut hop)?;
            Ok((want, plan, hop, applied))
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
            // Each served user's problem is what this run found: none, or a clash.
            for name in want.users.keys() {
                let problem = applied.clashes.contains(name).then(|| {
                    format!(
                        "An account named {name} exists on the gateway and was not made by \
                         Slices, so no gateway login was made for this user. Rename or remove \
                         that account on the gateway (or give this user another name)."
                    )
                });
                records::set_problem(tx, name, problem.as_deref())?;
            }
            // Users no longer served have no gateway problem either.
            match scope {
                Scope::All => records::clear_problems_except(tx, want.users.keys())?,
                Scope::User(u) if !want.users.contains_key(u.as_str()) => {
                    records::set_problem(tx, u.as_str(), None)?
                }
                Scope::User(_) => {}
            }
            for name in want.users.keys() {
                if applied.clashes.contains(name) {
                    continue;
                }
                let Some(key) = hop_keys.get(name) else {
                    continue;
                };
                let key = key.trim();
                if records::hop_key(tx, name)?.as_deref() != Some(key) {
                    records::set_hop_key(tx, name, Some(key))?;
                    new_keys.push(name.clone());
                    queue_keys(tx, name)?;
                }
            }
            for name in &removed {
                records::set_hop_key(tx, name, None)?;
            }
            Ok::<_, crate::error::Error>(())
        })?;
        Ok((plan, new_keys, applied.clashes))
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
) -> anyhow::Result<Applied> {
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
            Change::Sshd { .. } => batch.sshd = true,
        }
    }
    if plan.changes.is_empty() {
        return Ok(Applied::default());
    }
    t.apply(&batch)
}

/// Queues a job that gives each of the user's slices on a node its current keys.
fn queue_keys(tx: &Connection, username: &str) -> crate::error::Result<()> {
    for (slice, user, node) in records::keyed_slices(tx, username)? {
        crate::records::jobs::enqueue(
            tx,
            crate::records::jobs::JobKind::Keys,
            slice,
            Some(user),
            Some(node),
        )?;
    }
    Ok(())
}

/// Queues a gateway run for one user (after their keys, slices or account changed).
pub fn queue_user(tx: &Connection, user_id: i64) -> crate::error::Result<()> {
    crate::records::jobs::enqueue_gateway(tx, Some(user_id))?;
    Ok(())
}
