//! The workflows: what each kind of job does, step by step. A step with an effect on a host
//! is an idempotent agent command, and its completion is recorded (checkpoint, slice step,
//! event) in one transaction, so a retry after a crash skips it or harmlessly repeats it.

use std::collections::HashSet;

use rusqlite::{params, Connection};
use serde_json::Value;

use super::queue::{self, Job};
use super::runner::JobRunner;
use crate::domain::{DnsName, PrivateIp, Subnet, TemplateName, Username, VeId};
use crate::error::{Error, Result};
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

/// A node a slice can go to, with what ranks it.
struct Candidate {
    node: Node,
    subnet: Subnet,
    free_mb: i64,
    slices: i64,
}

/// Chooses a node for a slice and gives it a container id and an address there, or None when
/// no node has room. Filter: enabled, not draining, heard from recently, has the template,
/// room for the plan's memory, a free address. Rank: most free memory, then fewest slices.
/// First come, first served: while an earlier-approved slice waits, a later one waits behind.
fn place(
    conn: &Connection,
    slice: &Slice,
    job_id: i64,
    stale_secs: i64,
) -> Result<Option<(Node, i64, String)>> {
    let ahead: i64 = conn.query_row(
        "SELECT count(*) FROM slices WHERE state = 'queued' AND id <> ?1
           AND (decided_at < ?2 OR (decided_at = ?2 AND id < ?1))",
        params![slice.id, slice.decided_at.unwrap_or(0)],
        |r| r.get(0),
    )?;
    if ahead > 0 {
        return Ok(None);
    }
    let plan = slices::plan_limits(conn, slice.plan_id)?;
    let mut best: Option<Candidate> = None;
    for node in nodes::list(conn)? {
        if !node.enabled || node.draining {
            continue;
        }
        if slice.wanted_node.is_some_and(|w| w != node.id) {
            continue;
        }
        if node.last_seen_at.is_none_or(|t| t < now() - stale_secs) {
            continue;
        }
        let Some(info) = &node.info else { continue };
        let has_template = info["templates"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["name"] == slice.template.as_str()));
        let Some(subnet) = info["subnet"].as_str().and_then(|s| Subnet::parse(s).ok()) else {
            continue;
        };
        if !has_template {
            continue;
        }
        let (held_mb, count): (i64, i64) = conn.query_row(
            &format!(
                "SELECT coalesce(sum(p.memory_mb), 0), count(*) FROM slices s JOIN plans p ON p.id = s.plan_id
                 WHERE s.node_id = ?1 AND s.state IN {LIVE}"
            ),
            [node.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let free_mb = info["memory_mb"].as_i64().unwrap_or(0) - held_mb;
        if free_mb < plan.memory_mb as i64 || count as usize >= subnet.assignable().count() {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => (free_mb, -count) > (b.free_mb, -b.slices),
        };
        if better {
            best = Some(Candidate {
                node,
                subnet,
                free_mb,
                slices: count,
            });
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
        "UPDATE slices SET node_id = ?2, veid = ?3, ip = ?4, state = 'provisioning', step = 'creating the container',
                           failure = '', updated_at = ?5 WHERE id = ?1",
        params![slice.id, c.node.id, veid, ip, now()],
    )?;
    queue::checkpoint(conn, job_id, "placed")?;
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
    Ok(Some((c.node, veid, ip)))
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
                    Some(id) => nodes::list(c)?.into_iter().find(|n| n.id == id),
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
        let (username, limits) = self
            .db(move |db| {
                db.read(|c| {
                    let u = crate::accounts::users::by_id(c, user_id)?
                        .ok_or(Error::NotFound("user"))?;
                    Ok((u.username, slices::plan_limits(c, plan_id)?))
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
            keys: vec![],
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
                    Some((n, _, _)) => n,
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
                        let wait = self.cfg.health_secs.clamp(1, 30);
                        return Outcome::Wait(
                            format!("no node has room (place {position} in the queue)"),
                            wait,
                        );
                    }
                }
            }
        };
        let (slice, _) = step!(self.slice_and_node(slice_id).await);
        let spec = step!(self.spec(&slice).await);
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
            self.db(move |db| db.write(|tx| slices::set_state(
                tx,
                slice_id,
                State::Running,
                "",
                &message
            )))
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
            self.db(move |db| db.write(|tx| slices::set_state(tx, slice_id, state, "", message)))
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
                queue::wake_waiting(tx)?;
                Ok(())
            }))
            .await
        );
        self.wake();
        Outcome::Done
    }

    async fn node_health(&self, job: &Job) -> Outcome {
        let Some(node_id) = job.node_id else {
            return Outcome::Fail("no node".into());
        };
        let node = step!(
            self.db(
                move |db| db.read(|c| Ok(nodes::list(c)?.into_iter().find(|n| n.id == node_id)))
            )
            .await
        );
        let Some(node) = node else {
            return Outcome::Done;
        };
        let r = self
            .links
            .call(&node, Some(job.id), None, &Command::NodeInfo)
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
            self.wake();
        }
        Outcome::Done
    }

    async fn template_sync(&self, job: &Job) -> Outcome {
        let Some(node_id) = job.node_id else {
            return Outcome::Fail("no node".into());
        };
        let node = step!(
            self.db(
                move |db| db.read(|c| Ok(nodes::list(c)?.into_iter().find(|n| n.id == node_id)))
            )
            .await
        );
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
