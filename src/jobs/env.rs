//! What every job kind runs with: the database, the links to the agents, the settings, the
//! gateway and the template folder, and the steps they share (read a slice and its node, the
//! spec an agent needs, record a step, ask a node how it is, apply the gateway). A job kind
//! is a function of this and its row, so it can be run without the claim loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Links, RunnerConfig};
use crate::context::Context;
use crate::templates::TemplateDir;
use serde_json::Value;

use super::queue::{self, Job};
use super::{db_err, Outcome};
use crate::domain::{DnsName, PrivateIp, SshPublicKey, TemplateName, Username, VeId};
use crate::error::{Error, Result};
use crate::gateway::Scope;
use crate::nodes::{self, Node};
use crate::ops::slices::{self, Slice, State};
use crate::slave_link::{Command, EnvSpec};

pub struct JobEnv {
    pub ctx: Arc<Context>,
    pub links: Arc<Links>,
    /// This process's name on the leases it takes.
    pub owner: String,
    pub cfg: RunnerConfig,
    pub templates: Arc<TemplateDir>,
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Any commit that queues a job notifies this (`Db::jobs_queued`).
    pub wake: Arc<Notify>,
    /// Counts the moments room may have appeared (a node answered, a slice was destroyed),
    /// so a provisioning that found no room while one happened looks again at once.
    room: AtomicU64,
    /// The jobs running in this process and the node each is counted against.
    pub slots: Slots,
}

/// The jobs running in this process, each with the node it is counted against (None: not yet
/// placed). The loop claims within `concurrency` in all and `per_node` on each node; a job
/// that learns its node while it runs takes a place there itself ([`Slots::take`]).
#[derive(Default)]
pub struct Slots(Mutex<HashMap<i64, Option<i64>>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Option<i64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn insert(&self, job: i64, node: Option<i64>) {
        self.lock().insert(job, node);
    }
    pub fn remove(&self, job: i64) {
        self.lock().remove(&job);
    }
    /// How many jobs run now, in all.
    pub fn running(&self) -> usize {
        self.lock().len()
    }
    pub fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }
    /// How many running jobs each node has.
    pub fn per_node(&self) -> HashMap<i64, usize> {
        let mut m = HashMap::new();
        for node in self.lock().values().flatten() {
            *m.entry(*node).or_default() += 1;
        }
        m
    }
    /// Counts `job` against `node` if the node has fewer than `limit` jobs running; false
    /// (and nothing changed) when it is full.
    pub fn take(&self, job: i64, node: i64, limit: usize) -> bool {
        let mut m = self.lock();
        let on_node = m
            .iter()
            .filter(|(id, n)| **n == Some(node) && **id != job)
            .count();
        if on_node >= limit {
            return false;
        }
        m.insert(job, Some(node));
        true
    }
}

impl JobEnv {
    pub fn new(
        ctx: Arc<Context>,
        links: Arc<Links>,
        owner: String,
        cfg: RunnerConfig,
        templates: Arc<TemplateDir>,
        gateway: Arc<crate::gateway::Gateway>,
    ) -> JobEnv {
        JobEnv {
            wake: ctx.db.jobs_queued(),
            ctx,
            links,
            owner,
            cfg,
            templates,
            gateway,
            room: AtomicU64::new(0),
            slots: Slots::default(),
        }
    }

    /// Makes the loop look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn room_generation(&self) -> u64 {
        self.room.load(Ordering::SeqCst)
    }

    pub fn room_changed(&self) {
        self.room.fetch_add(1, Ordering::SeqCst);
        self.wake();
    }

    pub async fn db<T, F>(&self, f: F) -> std::result::Result<T, Outcome>
    where
        F: FnOnce(&crate::store::Db) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.run(f).await.map_err(db_err)
    }

    /// A short, bounded read (a few indexed lookups): on this thread when a reader is free.
    pub async fn read<T, F>(&self, f: F) -> std::result::Result<T, Outcome>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.read_now(f).await.map_err(db_err)
    }

    /// Whether this is the job's last attempt: a retry now ends it (as the runner judges).
    pub fn last_attempt(&self, job: &Job) -> bool {
        job.attempts >= job.max_attempts.min(self.cfg.max_attempts)
    }

    /// Why the job ends for good with `outcome` (a failure, or a retry on its last attempt),
    /// so a kind can put right what it leaves behind; None when it goes on or is done.
    pub fn gives_up(&self, job: &Job, outcome: &Outcome) -> Option<String> {
        match outcome {
            Outcome::Fail(why) => Some(why.clone()),
            Outcome::Retry(why) if self.last_attempt(job) => Some(why.clone()),
            _ => None,
        }
    }

    pub async fn ours(&self, job: &Job) -> bool {
        let (id, owner) = (job.id, self.owner.clone());
        matches!(
            self.read(move |c| queue::still_ours(c, id, &owner)).await,
            Ok(true)
        )
    }

    pub async fn slice_and_node(
        &self,
        slice_id: i64,
    ) -> std::result::Result<(Slice, Option<Node>), Outcome> {
        self.read(move |c| {
            let s = slices::get(c, slice_id)?.ok_or(Error::NotFound("slice"))?;
            let n = match s.node_id {
                Some(id) => nodes::by_id(c, id)?,
                None => None,
            };
            Ok((s, n))
        })
        .await
    }

    /// The spec the agent needs for a placed slice.
    pub async fn spec(&self, slice: &Slice) -> std::result::Result<EnvSpec, Outcome> {
        let (user_id, plan_id) = (slice.user_id, slice.plan_id);
        let (username, limits, root, hop_key) = self
            .read(move |c| {
                let u = crate::ops::accounts::users::by_id(c, user_id)?
                    .ok_or(Error::NotFound("user"))?;
                let hop = crate::records::gateway::hop_key_of(c, user_id)?;
                Ok((
                    u.username,
                    slices::plan_limits(c, plan_id)?,
                    crate::records::plans::plan_root(c, plan_id)?,
                    hop,
                ))
            })
            .await?;
        let bad = |e: crate::domain::FieldError| {
            Outcome::Fail(format!("slice {}: {}", slice.id, e.message))
        };
        Ok(EnvSpec {
            id: VeId::new(slice.veid.unwrap_or(0) as u64).map_err(bad)?,
            template: TemplateName::parse(&slice.template).map_err(bad)?,
            username: Username::parse(&username).map_err(bad)?,
            ip: PrivateIp::parse(slice.ip.as_deref().unwrap_or("")).map_err(bad)?,
            hostname: DnsName::parse(&slice.hostname).map_err(bad)?,
            nameservers: self.cfg.nameservers.clone(),
            search_domain: self.cfg.search_domain.clone(),
            limits,
            // The gateway's hop key for this user: the only way in.
            keys: hop_key
                .as_deref()
                .and_then(|k| SshPublicKey::parse(k).ok())
                .into_iter()
                .collect(),
            root,
        })
    }

    /// Records a step with an effect: checkpoint, the slice's step and an event, together.
    pub async fn record(
        &self,
        job: &Job,
        step: &'static str,
        next: &'static str,
        message: String,
    ) -> std::result::Result<(), Outcome> {
        self.record_with(job, step, next, message, None).await
    }

    /// Sends `cmd` to the job's node for a step with an effect and records the step
    /// ([`JobEnv::record`]) and the command's log entry in one transaction; a command that
    /// failed has its log entry written alone.
    pub async fn call_step(
        &self,
        job: &Job,
        node: &Node,
        cmd: &Command,
        step: &'static str,
        next: &'static str,
        message: String,
    ) -> std::result::Result<crate::slave_link::Reply, Outcome> {
        let (r, sent) = self
            .links
            .call_unlogged(node, Some(job.id), job.slice_id, cmd)
            .await;
        match super::judge(cmd.name(), r) {
            Ok(reply) => {
                self.record_with(job, step, next, message, Some(sent))
                    .await?;
                Ok(reply)
            }
            Err(outcome) => {
                self.db(move |db| db.write(|tx| crate::records::agent_log::insert(tx, &sent)))
                    .await?;
                Err(outcome)
            }
        }
    }

    async fn record_with(
        &self,
        job: &Job,
        step: &'static str,
        next: &'static str,
        message: String,
        sent: Option<crate::records::agent_log::Sent>,
    ) -> std::result::Result<(), Outcome> {
        let (job_id, slice_id) = (job.id, job.slice_id);
        self.db(move |db| {
            db.write(|tx| {
                if let Some(sent) = &sent {
                    crate::records::agent_log::insert(tx, sent)?;
                }
                queue::checkpoint(tx, job_id, step)?;
                if let Some(s) = slice_id {
                    crate::records::slices::set_step(tx, s, next)?;
                    if !message.is_empty() {
                        slices::event(tx, s, &message)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// For a job about a slice's container (keys, limits): the slice id, its node and its
    /// spec; None when it has no container any more (destroyed or moved meanwhile).
    pub async fn existing_slice(
        &self,
        job: &Job,
    ) -> std::result::Result<Option<(i64, Node, EnvSpec)>, Outcome> {
        let slice_id = job
            .slice_id
            .ok_or_else(|| Outcome::Fail("no slice".into()))?;
        let (slice, node) = self.slice_and_node(slice_id).await?;
        let Some(node) = node else {
            return Ok(None);
        };
        if !matches!(slice.state, State::Running | State::Stopped) || slice.veid.is_none() {
            return Ok(None);
        }
        Ok(Some((slice_id, node, self.spec(&slice).await?)))
    }

    /// The node a node job is about (None when it was removed meanwhile).
    pub async fn job_node(&self, job: &Job) -> std::result::Result<Option<Node>, Outcome> {
        let node_id = job.node_id.ok_or_else(|| Outcome::Fail("no node".into()))?;
        self.read(move |c| nodes::by_id(c, node_id)).await
    }

    /// Asks a node how it is and records the answer; staff are told (audit log) when a node
    /// stops answering and when it is back. A node that answers may have room: waiting
    /// requests are woken.
    pub async fn check_node(&self, node: &Node, job_id: Option<i64>) -> Outcome {
        let node = node.clone();
        let r = self
            .links
            .call(&node, job_id, None, &Command::NodeInfo)
            .await;
        let outcome: std::result::Result<Value, String> = match r {
            Ok(r) if r.is_ok() => Ok(r.returned.into_iter().next().unwrap_or_default()),
            Ok(r) => Err(r.text()),
            Err(e) => Err(e.to_string()),
        };
        let was_reachable = node.last_error.is_none() && node.last_seen_at.is_some();
        let reconcile = self.cfg.reconcile_secs > 0;
        let name = node.name.clone();
        let node_id = node.id;
        let ok = outcome.is_ok();
        step!(
            self.db(move |db| db.write(|tx| {
                nodes::record_contact(tx, &name, outcome.as_ref().map_err(|e| e.as_str()))?;
                match (&outcome, was_reachable) {
                    (Err(e), true) => crate::ops::accounts::audit::record(
                        tx,
                        crate::ops::accounts::audit::Event::NodeUnreachable,
                        &crate::ops::accounts::Actor::default(),
                        crate::records::audit::Subject::Node(&name),
                        e,
                    )?,
                    (Ok(_), false) => {
                        crate::ops::accounts::audit::record(
                            tx,
                            crate::ops::accounts::audit::Event::NodeReachable,
                            &crate::ops::accounts::Actor::default(),
                            crate::records::audit::Subject::Node(&name),
                            "",
                        )?;
                    }
                    _ => {}
                }
                match &outcome {
                    Ok(_) => {
                        queue::wake_waiting(tx)?;
                        queue::wake_for_node(tx, node_id)?;
                    }
                    // Its jobs wait for it without trying, each, every few seconds.
                    Err(e) => {
                        queue::park_for_node(tx, node_id, &format!("node_info: {e}"))?;
                    }
                }
                // Back after an outage: what happened on it meanwhile is looked at now
                // (unless reconciling is off).
                if let (Ok(_), false, true) = (&outcome, was_reachable, reconcile) {
                    queue::enqueue_for_node(
                        tx,
                        crate::jobs::JobKind::Reconcile,
                        node_id,
                        crate::store::now(),
                    )?;
                }
                Ok(())
            }))
            .await
        );
        if ok {
            self.room_changed();
        }
        Outcome::Done
    }

    /// Runs a gateway apply off the async threads.
    pub async fn gateway_apply(
        &self,
        scope: Scope,
    ) -> std::result::Result<crate::gateway::Report, Outcome> {
        let (gw, db) = (self.gateway.clone(), self.ctx.db.clone());
        match tokio::task::spawn_blocking(move || gw.apply(&db, &scope)).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(Outcome::Retry(format!("gateway: {e:#}"))),
            Err(e) => Err(Outcome::Retry(format!("gateway: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn a_job_takes_a_place_on_its_node_only_while_the_node_has_one_free() {
        let s = Slots::default();
        s.insert(1, Some(7));
        s.insert(2, None);
        s.insert(3, None);
        assert!(s.take(2, 7, 2), "one of two places taken");
        assert!(!s.take(3, 7, 2), "both taken");
        assert_eq!(s.per_node().get(&7), Some(&2));
        assert!(s.take(3, 8, 2), "another node");
        // A job already counted there is not counted twice.
        assert!(s.take(2, 7, 2));
        s.remove(1);
        assert!(s.take(3, 7, 2));
        assert_eq!(s.per_node().get(&7), Some(&2));
        assert_eq!(s.running(), 2);
    }
}
