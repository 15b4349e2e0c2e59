//! The workflows: what each kind of job does, step by step. A step with an effect on a host
//! is an idempotent agent command, and its completion is recorded (checkpoint, slice step,
//! event) in one transaction, so a retry after a crash skips it or harmlessly repeats it.

use std::collections::HashSet;

use rusqlite::{params, Connection};
use serde_json::Value;

use super::queue::{self, Job};
use super::runner::JobRunner;
use crate::domain::{DnsName, PrivateIp, SshPublicKey, Subnet, TemplateName, Username, VeId};
use crate::error::{Error, Result};
use crate::gateway::Scope;
use crate::nodes::{self, Node};
use crate::slave_link::{code, Command, EnvSpec, LinkError, Reply};
use crate::slices::{self, Slice, State};
use crate::store::now;

/// How a run of a job ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Done,
    /// A passing trouble (an agent down, a timeout): try again later.
    Retry(String),
    /// Trying again cannot help (a bad argument, an unknown template).
    Fail(String),
    /// Not a failure: wait this many seconds (no node has room yet).
    Wait(String, i64),
    /// Cancelled meanwhile, or no longer ours: leave it.
    Abandoned,
}

/// Judges an agent's answer: success, a permanent refusal, or a passing failure.
fn judge(
    what: &str,
    r: std::result::Result<Reply, LinkError>,
) -> std::result::Result<Reply, Outcome> {
    match r {
        Ok(r) if r.code == code::OK => Ok(r),
        Ok(r)
            if [
                code::BAD_ARGUMENTS,
                code::CONFLICT,
                code::NO_TEMPLATE,
                code::NOT_FOUND,
                code::UNKNOWN_COMMAND,
            ]
            .contains(&r.code) =>
        {
            Err(Outcome::Fail(format!("{what}: {}", r.text())))
        }
        Ok(r) => Err(Outcome::Retry(format!("{what}: {}", r.text()))),
        Err(e) => Err(Outcome::Retry(format!("{what}: {e}"))),
    }
}

macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(o) => return o,
        }
    };
}

fn db_err(e: Error) -> Outcome {
    Outcome::Retry(format!("database: {e}"))
}

/// Live slices hold their node's resources.
const LIVE: &str = "('provisioning', 'running', 'stopped', 'destroying')";

/// A node a slice can go to.
struct Candidate {
    node: Node,
    subnet: Subnet,
}

/// Chooses a node for a slice and gives it a container id and an address there, or None when
/// no node has room. Filter: enabled, not draining, heard from recently, has the template,
/// room for the plan's memory, a free address. Rank: most free memory, then fewest slices.
/// First come, first served: while an earlier-approved slice waits, a later one waits behind.
fn place(conn: &Connection, slice: &Slice, job_id: i64, stale_secs: i64) -> Result<Option<Node>> {
    // Another job's placement may have placed this slice since it was read.
    if let Some(node_id) = slices::get(conn, slice.id)?.and_then(|s| s.node_id) {
        queue::checkpoint(conn, job_id, "placed")?;
        return nodes::by_id(conn, node_id);
    }
    // Everyone approved before this slice and not yet placed goes first, in order, in this
    // same transaction; the first that does not fit stops the line.
    let waiting: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM slices WHERE state IN ('approved', 'queued') AND node_id IS NULL
               AND (decided_at < ?1 OR (decided_at = ?1 AND id <= ?2))
             ORDER BY decided_at, id",
        )?
        .query_map(params![slice.decided_at.unwrap_or(0), slice.id], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut placed = None;
    for id in waiting {
        let Some(s) = slices::get(conn, id)? else {
            continue;
        };
        match place_one(conn, &s, stale_secs)? {
            Some(node) if id == slice.id => placed = Some(node),
            Some(_) => {}
            None => return Ok(None),
        }
    }
    if placed.is_some() {
        queue::checkpoint(conn, job_id, "placed")?;
    }
    Ok(placed)
}

/// Places one slice, if some node has room for it.
fn place_one(conn: &Connection, slice: &Slice, stale_secs: i64) -> Result<Option<Node>> {
    let plan = slices::plan_limits(conn, slice.plan_id)?;
    // The filter and ranking in one query; node_info is read with SQLite's JSON functions.
    let mut stmt = conn.prepare_cached(&format!(
        "WITH held AS (
             SELECT s.node_id, sum(p.memory_mb) AS mb, count(*) AS n
             FROM slices s JOIN plans p ON p.id = s.plan_id
             WHERE s.node_id IS NOT NULL AND s.state IN {LIVE} GROUP BY s.node_id)
         SELECT n.id, json_extract(n.info, '$.subnet') AS subnet, coalesce(h.n, 0) AS count,
                json_extract(n.info, '$.memory_mb') - coalesce(h.mb, 0) AS free
         FROM nodes n LEFT JOIN held h ON h.node_id = n.id
         WHERE n.enabled AND NOT n.draining AND n.last_seen_at >= ?1
           AND (?2 IS NULL OR n.id = ?2)
           AND EXISTS (SELECT 1 FROM json_each(n.info, '$.templates') t
                       WHERE json_extract(t.value, '$.name') = ?3)
           AND free >= ?4
         ORDER BY free DESC, count ASC, n.id"
    ))?;
    let rows = stmt
        .query_map(
            params![
                now() - stale_secs,
                slice.wanted_node,
                slice.template,
                plan.memory_mb
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut best = None;
    for (node_id, subnet, count) in rows {
        let Some(subnet) = subnet.and_then(|s| Subnet::parse(&s).ok()) else {
            continue;
        };
        if (count as usize) < subnet.assignable().count() {
            if let Some(node) = nodes::by_id(conn, node_id)? {
                best = Some(Candidate { node, subnet });
                break;
            }
        }
    }
    let Some(c) = best else { return Ok(None) };
    let used: HashSet<String> = conn
        .prepare_cached("SELECT ip FROM slices WHERE node_id = ?1 AND ip IS NOT NULL")?
        .query_map([c.node.id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let ids: HashSet<i64> = conn
        .prepare_cached("SELECT veid FROM slices WHERE node_id = ?1 AND veid IS NOT NULL")?
        .query_map([c.node.id], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let Some(ip) = c
        .subnet
        .assignable()
        .map(|a| a.to_string())
        .find(|a| !used.contains(a))
    else {
        return Ok(None);
    };
    let veid = (VeId::MIN as i64..)
        .find(|v| !ids.contains(v))
        .expect("a free id");
    conn.execute(
        "UPDATE slices SET node_id = ?2, veid = ?3, ip = ?4, state = 'provisioning', step = 'setting up the gateway login',
                           failure = '', updated_at = ?5 WHERE id = ?1",
        params![slice.id, c.node.id, veid, ip, now()],
    )?;
    slices::event(
        conn,
        slice.id,
        &format!(
            "Placed on node {} as container {veid} at {ip}.",
            c.node.name
        ),
    )?;
    if slice.state == State::Queued {
        queue::wake_waiting(conn)?; // the next in line may fit too
    }
    Ok(Some(c.node))
}

impl JobRunner {
    async fn db<T, F>(&self, f: F) -> std::result::Result<T, Outcome>
    where
        F: FnOnce(&crate::store::Db) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.run(f).await.map_err(db_err)
    }

    async fn ours(&self, job: &Job) -> bool {
        let (id, owner) = (job.id, self.owner.clone());
        matches!(
            self.db(move |db| db.read(|c| queue::still_ours(c, id, &owner)))
                .await,
            Ok(true)
        )
    }

    pub(super) async fn execute(&self, job: &Job) -> Outcome {
        use super::JobKind::*;
        match job.kind() {
            Some(Provision) => self.provision(job).await,
            Some(Start) => self.power(job, "start").await,
            Some(Stop) => self.power(job, "stop").await,
            Some(Restart) => self.power(job, "restart").await,
            Some(Destroy) => self.destroy(job).await,
            Some(NodeHealth) => self.node_health(job).await,
            Some(TemplateSync) => self.template_sync(job).await,
            Some(Gateway) => self.gateway_job(job).await,
            Some(Keys) => self.keys(job).await,
            Some(Move) => self.move_slice(job).await,
            Some(Usage) => self.usage(job).await,
            Some(Limits) => self.limits(job).await,
            None => Outcome::Fail(format!("unknown job kind `{}`", job.kind)),
        }
    }

    async fn slice_and_node(
        &self,
        slice_id: i64,
    ) -> std::result::Result<(Slice, Option<Node>), Outcome> {
        self.db(move |db| {
            db.read(|c| {
                let s = slices::get(c, slice_id)?.ok_or(Error::NotFound("slice"))?;
                let n = match s.node_id {
                    Some(id) => nodes::by_id(c, id)?,
                    None => None,
                };
                Ok((s, n))
            })
        })
        .await
    }

    /// The spec the agent needs for a placed slice.
    async fn spec(&self, slice: &Slice) -> std::result::Result<EnvSpec, Outcome> {
        let (user_id, plan_id) = (slice.user_id, slice.plan_id);
        let (username, limits, hop_key) = self
            .db(move |db| {
                db.read(|c| {
                    let u = crate::accounts::users::by_id(c, user_id)?
                        .ok_or(Error::NotFound("user"))?;
                    let hop: Option<String> =
                        c.query_row("SELECT hop_key FROM users WHERE id = ?1", [user_id], |r| {
                            r.get(0)
                        })?;
                    Ok((u.username, slices::plan_limits(c, plan_id)?, hop))
                })
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
        })
    }

    /// Records a step with an effect: checkpoint, the slice's step and an event, together.
    async fn record(
        &self,
        job: &Job,
        step: &'static str,
        next: &'static str,
        message: String,
    ) -> std::result::Result<(), Outcome> {
        let (job_id, slice_id) = (job.id, job.slice_id);
        self.db(move |db| {
            db.write(|tx| {
                queue::checkpoint(tx, job_id, step)?;
                if let Some(s) = slice_id {
                    tx.execute(
                        "UPDATE slices SET step = ?2, updated_at = ?3 WHERE id = ?1",
                        params![s, next, now()],
                    )?;
                    if !message.is_empty() {
                        slices::event(tx, s, &message)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn provision(&self, job: &Job) -> Outcome {
        let room_seen = self.room_generation();
        let Some(slice_id) = job.slice_id else {
            return Outcome::Fail("no slice".into());
        };
        let (slice, node) = step!(self.slice_and_node(slice_id).await);
        if matches!(
            slice.state,
            State::Destroying | State::Destroyed | State::Denied | State::Running
        ) {
            return Outcome::Done;
        }
        let node = match node {
            Some(n) if slice.veid.is_some() && slice.ip.is_some() => n,
            _ => {
                let (s, job_id, stale) = (slice.clone(), job.id, self.cfg.node_stale_secs);
                let placed = step!(
                    self.db(move |db| db.write(|tx| place(tx, &s, job_id, stale)))
                        .await
                );
                match placed {
                    Some(n) => n,
                    None => {
                        let s = slice.clone();
                        let position = step!(
                            self.db(move |db| db.write(|tx| {
                                if s.state != State::Queued {
                                    slices::set_state(
                                        tx,
                                        s.id,
                                        State::Queued,
                                        "",
                                        "No node has room right now; it waits in the queue.",
                                    )?;
                                }
                                let fresh =
                                    slices::get(tx, s.id)?.ok_or(Error::NotFound("slice"))?;
                                slices::queue_position(tx, &fresh)
                            }))
                            .await
                        );
                        // Room appears when a slice is destroyed (which wakes this job) or a node
                        // reports in, at the latest at the next health check.
                        let wait = if self.room_generation() != room_seen {
                            0 // room changed while this ran: look again at once
                        } else {
                            self.cfg.health_secs.clamp(1, 30)
                        };
                        return Outcome::Wait(
                            format!("no node has room (place {position} in the queue)"),
                            wait,
                        );
                    }
                }
            }
        };
        let (slice, _) = step!(self.slice_and_node(slice_id).await);
        let mut spec = step!(self.spec(&slice).await);
        if !job.done("gateway") {
            if !self.ours(job).await {
                return Outcome::Abandoned;
            }
            step!(self.gateway_apply(Scope::User(spec.username.clone())).await);
            step!(
                self.record(
                    job,
                    "gateway",
                    "creating the container",
                    "Gateway login ready.".into()
                )
                .await
            );
            spec = step!(self.spec(&slice).await);
        }
        if spec.keys.is_empty() {
            return Outcome::Retry(format!(
                "the gateway holds no hop key for {} yet",
                spec.username
            ));
        }
        if !job.done("created") {
            if !self.ours(job).await {
                return Outcome::Abandoned;
            }
            let r = self
                .links
                .call(
                    &node,
                    Some(job.id),
                    Some(slice_id),
                    &Command::CreateEnv(Box::new(spec.clone())),
                )
                .await;
            step!(judge("create_env", r));
            step!(
                self.record(job, "created", "starting", "Container created.".into())
                    .await
            );
        }
        if !job.done("started") {
            if !self.ours(job).await {
                return Outcome::Abandoned;
            }
            let r = self
                .links
                .call(
                    &node,
                    Some(job.id),
                    Some(slice_id),
                    &Command::StartEnv(spec.id),
                )
                .await;
            step!(judge("start_env", r));
            step!(
                self.record(job, "started", "finishing", "Container started.".into())
                    .await
            );
        }
        let message = format!("Running on node {} at {}.", node.name, spec.ip);
        step!(
            self.db(move |db| db.write(|tx| {
                slices::set_state(tx, slice_id, State::Running, "", &message)?;
                slices::mail_owner(
                    tx,
                    slice_id,
                    crate::mail::Kind::SliceReady,
                    serde_json::json!({}),
                )
            }))
            .await
        );
        Outcome::Done
    }

    async fn power(&self, job: &Job, what: &'static str) -> Outcome {
        let Some(slice_id) = job.slice_id else {
            return Outcome::Fail("no slice".into());
        };
        let (slice, node) = step!(self.slice_and_node(slice_id).await);
        let (Some(node), Some(veid)) = (node, slice.veid) else {
            return Outcome::Fail("the slice is not on a node".into());
        };
        if matches!(slice.state, State::Destroying | State::Destroyed) {
            return Outcome::Done;
        }
        let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
        let (cmd, state, message) = match what {
            "start" => (Command::StartEnv(id), State::Running, "Started."),
            "stop" => (Command::StopEnv(id), State::Stopped, "Stopped."),
            _ => (Command::RestartEnv(id), State::Running, "Restarted."),
        };
        let r = self
            .links
            .call(&node, Some(job.id), Some(slice_id), &cmd)
            .await;
        step!(judge(cmd.name(), r));
        step!(
            self.db(move |db| db.write(|tx| {
                slices::set_state(tx, slice_id, state, "", message)?;
                if state == State::Stopped {
                    slices::mail_owner(
                        tx,
                        slice_id,
                        crate::mail::Kind::SliceStopped,
                        serde_json::json!({}),
                    )?;
                }
                Ok(())
            }))
            .await
        );
        Outcome::Done
    }

    async fn destroy(&self, job: &Job) -> Outcome {
        let Some(slice_id) = job.slice_id else {
            return Outcome::Fail("no slice".into());
        };
        let (slice, node) = step!(self.slice_and_node(slice_id).await);
        if slice.state == State::Destroyed {
            return Outcome::Done;
        }
        if let (Some(node), Some(veid)) = (&node, slice.veid) {
            if !job.done("removed") {
                let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
                let r = self
                    .links
                    .call(node, Some(job.id), Some(slice_id), &Command::DestroyEnv(id))
                    .await;
                step!(judge("destroy_env", r));
                step!(
                    self.record(job, "removed", "releasing", "Container removed.".into())
                        .await
                );
            }
        }
        // Release the address and id, and let waiting requests try again.
        step!(
            self.db(move |db| db.write(|tx| {
                tx.execute(
                    "UPDATE slices SET veid = NULL, ip = NULL, state = 'destroyed', step = '', updated_at = ?2 WHERE id = ?1",
                    params![slice_id, now()],
                )?;
                slices::event(tx, slice_id, "Destroyed; its address is free again.")?;
                slices::mail_owner(tx, slice_id, crate::mail::Kind::SliceDestroyed, serde_json::json!({}))?;
                queue::wake_waiting(tx)?;
                // Its login and web address go from the gateway.
                crate::gateway::queue_user(tx, slice.user_id)?;
                Ok(())
            }))
            .await
        );
        self.room_changed();
        Outcome::Done
    }

    /// A move: remove the old container (unless its node is disabled, i.e. taken out of
    /// service), release its address and id, and provision afresh on the wanted node.
    async fn move_slice(&self, job: &Job) -> Outcome {
        let Some(slice_id) = job.slice_id else {
            return Outcome::Fail("no slice".into());
        };
        let (slice, node) = step!(self.slice_and_node(slice_id).await);
        if slice.state != State::Provisioning {
            return Outcome::Done; // destroyed or acted on meanwhile
        }
        if !job.done("removed_old") {
            let mut message = "The old container is removed.".to_string();
            if let (Some(node), Some(veid)) = (&node, slice.veid) {
                if node.enabled {
                    let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
                    let r = self
                        .links
                        .call(node, Some(job.id), Some(slice_id), &Command::DestroyEnv(id))
                        .await;
                    step!(judge("destroy_env", r));
                } else {
                    message = format!(
                        "Node {} is disabled: its old container {veid} is left there for staff to remove.",
                        node.name
                    );
                }
            }
            step!(
                self.record(job, "removed_old", "waiting for a place", message)
                    .await
            );
        }
        let user_id = slice.user_id;
        step!(
            self.db(move |db| db.write(|tx| {
                tx.execute(
                    "UPDATE slices SET node_id = NULL, veid = NULL, ip = NULL, state = 'approved',
                                       step = '', updated_at = ?2 WHERE id = ?1",
                    params![slice_id, now()],
                )?;
                super::enqueue(tx, super::JobKind::Provision, slice_id, Some(user_id), None)?;
                queue::wake_waiting(tx)?;
                Ok(())
            }))
            .await
        );
        self.room_changed();
        Outcome::Done
    }

    /// For a job about a slice's container (keys, limits): the slice id, its node and its
    /// spec; None when it has no container any more (destroyed or moved meanwhile).
    async fn existing_slice(
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

    /// Puts the slice's plan in force on its node (`set_limits`: live when it runs).
    async fn limits(&self, job: &Job) -> Outcome {
        let Some((slice_id, node, spec)) = step!(self.existing_slice(job).await) else {
            return Outcome::Done;
        };
        let r = self
            .links
            .call(
                &node,
                Some(job.id),
                Some(slice_id),
                &Command::SetLimits(spec.id, spec.limits),
            )
            .await;
        step!(judge("set_limits", r));
        let l = spec.limits;
        let message = format!(
            "New limits in force: memory {} MB (at most {} MB), {} processes, CPU weight {}.",
            l.memory_mb, l.memory_limit_mb, l.processes, l.cpu_shares
        );
        step!(
            self.db(move |db| db.write(|tx| slices::event(tx, slice_id, &message)))
                .await
        );
        Outcome::Done
    }

    /// Samples what a node's running slices use; a risen failcnt is an alert (audit row; one
    /// mail a day to the owner). Old samples are dropped.
    async fn usage(&self, job: &Job) -> Outcome {
        let node = step!(self.job_node(job).await);
        let Some(node) = node else {
            return Outcome::Done;
        };
        let r = self
            .links
            .call(&node, Some(job.id), None, &Command::Usage(None))
            .await;
        let reply = step!(judge("usage", r));
        let mut reports = Vec::new();
        for item in reply.returned {
            let id = item.get("id").and_then(Value::as_i64);
            let counters: Option<Vec<crate::agent::driver::Counter>> = item
                .get("counters")
                .and_then(|c| serde_json::from_value(c.clone()).ok());
            if let (Some(id), Some(c)) = (id, counters) {
                reports.push((id, c));
            }
        }
        let (node_id, keep) = (node.id, self.cfg.usage_keep_secs);
        step!(
            self.db(move |db| db.write(|tx| {
                let t = now();
                let day = crate::mail::day_of(t);
                for (veid, counters) in &reports {
                    let slice: Option<i64> = rusqlite::OptionalExtension::optional(tx.query_row(
                        "SELECT id FROM slices WHERE node_id = ?1 AND veid = ?2 AND state = 'running'",
                        params![node_id, veid],
                        |r| r.get(0),
                    ))?;
                    let Some(slice) = slice else { continue };
                    for (resource, hits) in crate::usage::record(tx, slice, t, counters)? {
                        crate::usage::alert(tx, slice, &resource, hits, &day)?;
                    }
                }
                crate::usage::prune(tx, t - keep)?;
                Ok(())
            }))
            .await
        );
        Outcome::Done
    }

    /// The node a node job is about (None when it was removed meanwhile).
    async fn job_node(&self, job: &Job) -> std::result::Result<Option<Node>, Outcome> {
        let node_id = job.node_id.ok_or_else(|| Outcome::Fail("no node".into()))?;
        self.db(move |db| db.read(|c| nodes::by_id(c, node_id)))
            .await
    }

    async fn node_health(&self, job: &Job) -> Outcome {
        let node = step!(self.job_node(job).await);
        match node {
            Some(node) => self.check_node(&node, Some(job.id)).await,
            None => Outcome::Done,
        }
    }

    /// Asks a node how it is and records the answer; staff are told (audit log) when a node
    /// stops answering and when it is back. A node that answers may have room: waiting
    /// requests are woken.
    pub(super) async fn check_node(&self, node: &Node, job_id: Option<i64>) -> Outcome {
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
        let name = node.name.clone();
        let ok = outcome.is_ok();
        step!(
            self.db(move |db| db.write(|tx| {
                nodes::record_contact(tx, &name, outcome.as_ref().map_err(|e| e.as_str()))?;
                match (&outcome, was_reachable) {
                    (Err(e), true) => crate::accounts::audit::record(
                        tx,
                        crate::accounts::audit::Event::NodeUnreachable,
                        &crate::accounts::Actor::default(),
                        &name,
                        e,
                    )?,
                    (Ok(_), false) => {
                        crate::accounts::audit::record(
                            tx,
                            crate::accounts::audit::Event::NodeReachable,
                            &crate::accounts::Actor::default(),
                            &name,
                            "",
                        )?;
                    }
                    _ => {}
                }
                if ok {
                    queue::wake_waiting(tx)?;
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
    async fn gateway_apply(
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

    async fn gateway_job(&self, job: &Job) -> Outcome {
        let scope = match job.user_id {
            None => Scope::All,
            Some(id) => {
                let user = step!(
                    self.db(move |db| db.read(|c| crate::accounts::users::by_id(c, id)))
                        .await
                );
                match user.map(|u| Username::parse(&u.username)) {
                    Some(Ok(u)) => Scope::User(u),
                    _ => return Outcome::Fail("no such user".into()),
                }
            }
        };
        let report = step!(self.gateway_apply(scope).await);
        if !report.plan.is_empty() {
            tracing::info!(scope = %report.scope, changes = report.plan.changes.len(), ms = report.duration_ms, "gateway applied");
        }
        Outcome::Done
    }

    /// Gives a slice the keys of its spec (after the user's hop key changed).
    async fn keys(&self, job: &Job) -> Outcome {
        let Some((slice_id, node, spec)) = step!(self.existing_slice(job).await) else {
            return Outcome::Done;
        };
        let r = self
            .links
            .call(
                &node,
                Some(job.id),
                Some(slice_id),
                &Command::SetKeys(spec.id, spec.keys.clone()),
            )
            .await;
        step!(judge("set_keys", r));
        step!(
            self.db(move |db| db.write(|tx| slices::event(
                tx,
                slice_id,
                "The gateway's key for this slice was renewed."
            )))
            .await
        );
        Outcome::Done
    }

    async fn template_sync(&self, job: &Job) -> Outcome {
        let node = step!(self.job_node(job).await);
        let Some(node) = node else {
            return Outcome::Done;
        };
        let mut link = match self.links.connect(&node).await {
            Ok(l) => l,
            Err(e) => return Outcome::Retry(format!("template sync: {e}")),
        };
        match nodes::sync_templates(&mut link, self.templates.clone()).await {
            Ok(done) => {
                let sent: Vec<String> = done
                    .iter()
                    .filter(|s| s.outcome == "installed")
                    .map(|s| s.name.clone())
                    .collect();
                if !sent.is_empty() {
                    tracing::info!(node = %node.name, templates = ?sent, "templates sent");
                }
                Outcome::Done
            }
            Err(e) => Outcome::Retry(format!("template sync: {e}")),
        }
    }
}
