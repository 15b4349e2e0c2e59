//! Applying a plan: the `Gateway` (one run at a time), its report, the record of runs, and the jobs a run queues.

use std::collections::{BTreeMap, HashMap};
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

/// The gateway as the master uses it: one target, one run at a time. Runs asked for while
/// another runs are done together as the next one (each caller waits for the run that covers
/// it): a burst of new slices rewrites the map once per run, not once per slice.
pub struct Gateway {
    settings: Settings,
    target: Mutex<Option<Box<dyn Target>>>,
    /// Held by the caller that does the next run.
    leader: Mutex<()>,
    queue: Mutex<Queue>,
}

/// The runs asked for and the outcomes of finished runs not yet taken.
#[derive(Default)]
struct Queue {
    /// What the next run covers (None: nobody asked for one).
    next: Option<Scope>,
    /// The next run's number.
    next_no: u64,
    /// Callers waiting for each run.
    waiting: HashMap<u64, usize>,
    /// A finished run's outcome and how many callers have yet to take it.
    done: HashMap<u64, (Result<Report, String>, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            leader: Mutex::new(()),
            queue: Mutex::new(Queue::default()),
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
    /// slices that need them. The report is the run's that covered `scope`, which may have
    /// covered other users too.
    pub fn apply(&self, db: &Db, scope: &Scope) -> anyhow::Result<Report> {
        let mine = {
            let mut q = lock(&self.queue);
            q.next = Some(match q.next.take() {
                Some(s) => s.merge(scope.clone()),
                None => scope.clone(),
            });
            let no = q.next_no;
            *q.waiting.entry(no).or_default() += 1;
            no
        };
        let _lead = lock(&self.leader);
        let mut q = lock(&self.queue);
        if let Some((outcome, left)) = q.done.get_mut(&mine) {
            *left -= 1;
            let outcome = outcome.clone();
            if *left == 0 {
                q.done.remove(&mine);
            }
            return outcome.map_err(|e| anyhow::anyhow!(e));
        }
        // Runs happen only under the leader's lock, and each leaves its outcome before it lets
        // go: ours has not started, so it is the next, and it is ours to do. (Had a run
        // panicked, its callers would each do a run of their own: the scope then is ours at
        // least.)
        let scope = match q.next.take() {
            Some(next) => next.merge(scope.clone()),
            None => scope.clone(),
        };
        q.next_no += 1;
        drop(q);
        let outcome = self.apply_now(db, &scope);
        let mut q = lock(&self.queue);
        let others = q.waiting.remove(&mine).unwrap_or(1).saturating_sub(1);
        if others > 0 {
            let shared = outcome
                .as_ref()
                .map(Clone::clone)
                .map_err(|e| format!("{e:#}"));
            q.done.insert(mine, (shared, others));
        }
        outcome
    }

    /// One run, now.
    fn apply_now(&self, db: &Db, scope: &Scope) -> anyhow::Result<Report> {
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
            // What is recorded now, read at once for a run for all (one statement, not two
            // per user); only what differs is written.
            let recorded = match scope.users() {
                None => Some(records::problems_and_hop_keys(tx)?),
                Some(_) => None,
            };
            let recorded_of = |name: &str| -> crate::error::Result<records::UserGateway> {
                match &recorded {
                    Some(all) => Ok(all.get(name).cloned().unwrap_or_default()),
                    None => records::problem_and_hop_key(tx, name),
                }
            };
            // Each served user's problem is what this run found: none, or a clash.
            for name in want.users.keys() {
                let problem = applied.clashes.contains(name).then(|| {
                    format!(
                        "An account named {name} exists on the gateway and was not made by \
                         Slices, so no gateway login was made for this user. Rename or remove \
                         that account on the gateway (or give this user another name)."
                    )
                });
                if recorded_of(name)?.problem != problem {
                    records::set_problem(tx, name, problem.as_deref())?;
                }
            }
            // Users no longer served have no gateway problem either.
            match scope.users() {
                None => records::clear_problems_except(tx, want.users.keys())?,
                Some(users) => {
                    for u in users {
                        if !want.users.contains_key(u.as_str()) {
                            records::set_problem(tx, u.as_str(), None)?;
                        }
                    }
                }
            }
            for name in want.users.keys() {
                if applied.clashes.contains(name) {
                    continue;
                }
                let Some(key) = hop_keys.get(name) else {
                    continue;
                };
                let key = key.trim();
                if recorded_of(name)?.hop_key.as_deref() != Some(key) {
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

fn only(scope: &Scope) -> Option<&[Username]> {
    scope.users()
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
                batch.file(user, UserFile::KnownHosts, vec![]);
            }
            Change::HopKey { user } => {
                let (private, public) = hop_key_pair(user)?;
                batch.file(user, UserFile::HopPrivate, private.into_bytes());
                batch.file(user, UserFile::HopPublic, public.clone().into_bytes());
                hop.insert(user.to_string(), public);
            }
            Change::Script { user, text, .. } => {
                batch.file(user, UserFile::Script, text.clone().into_bytes());
                // The script may now reach another container (the slice moved or was
                // reinstalled, with a new host key): its key is learnt anew at the next login.
                batch.file(user, UserFile::KnownHosts, vec![]);
            }
            Change::Keys { user, text, .. } => {
                batch.file(user, UserFile::AuthorizedKeys, text.clone().into_bytes())
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs asked for while another runs meet in the next one, and every caller gets its
    /// outcome.
    #[test]
    fn runs_asked_for_meanwhile_are_done_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let flags = [("data", dir.path().display().to_string())];
        let config = Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap();
        let db = Db::open(&dir.path().join("slices.db"), 2).unwrap();
        let gw = std::sync::Arc::new(Gateway::from_config(&config).unwrap());
        // Hold the next run, as a run in progress would, while three callers ask.
        let held = lock(&gw.leader);
        let callers: Vec<_> = ["carol", "alice", "bob"]
            .into_iter()
            .map(|name| {
                let (gw, db) = (gw.clone(), db.clone());
                std::thread::spawn(move || {
                    gw.apply(&db, &Scope::User(Username::parse(name).unwrap()))
                })
            })
            .collect();
        while lock(&gw.queue).waiting.get(&0).copied().unwrap_or(0) < 3 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(held);
        let reports: Vec<Report> = callers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        assert!(reports.iter().all(|r| r.scope == "alice, bob, carol"));
        let runs = db.read(|c| runs(c, 10)).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].scope, "alice, bob, carol");
        // Nothing is left behind for callers that will never come.
        let q = lock(&gw.queue);
        assert!(q.done.is_empty() && q.waiting.is_empty() && q.next.is_none());
        assert_eq!(q.next_no, 1);
        drop(q);
        // A lone caller runs at once, on its own.
        let alone = gw
            .apply(&db, &Scope::User(Username::parse("dave").unwrap()))
            .unwrap();
        assert_eq!(alone.scope, "dave");
    }
}
