//! The loop that runs jobs: claim what is due, run it, record how it ended; renew leases;
//! schedule node health checks and template syncs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use super::outbox::MailSender;
use super::queue::{self, Job};
use super::{JobEnv, JobKind, Links, Outcome};
use crate::context::Context;
use crate::domain::DnsName;
use crate::error::Result;
use crate::ops::slices;
use crate::templates::TemplateDir;

/// How the loop behaves (from the configuration).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs running at once, in all.
    pub concurrency: usize,
    /// Jobs running at once on one node.
    pub per_node: usize,
    pub lease_secs: i64,
    /// The first retry waits this long; each next one twice as long (with jitter), up to 10 min.
    pub retry_base_secs: i64,
    /// How many times a job is tried before it fails.
    pub max_attempts: i64,
    /// How often each node is asked how it is.
    pub health_secs: i64,
    /// How often templates are synced to every node (0: only on demand).
    pub template_sync_secs: i64,
    /// How often the whole gateway is reconciled (0: only on changes and on demand).
    pub gateway_sync_secs: i64,
    /// How often each node's usage is sampled (0: never), and how long samples are kept.
    pub usage_secs: i64,
    pub usage_keep_secs: i64,
    /// How often each node's containers are compared with the database (0: never), and
    /// whether a slice found stopped that should run is started again (else only reported).
    pub reconcile_secs: i64,
    pub reconcile_restart: bool,
    /// A node not heard from for this long gets no new slices.
    pub node_stale_secs: i64,
    /// How often slices' ends are looked at (0: never), and how long a slice stays stopped at
    /// its end before it is destroyed.
    pub term_check_secs: i64,
    /// How often the directory's accounts are looked up again (0: never, or no directory).
    pub directory_check_secs: i64,
    pub term_grace_secs: i64,
    /// How long to wait for an agent's answer.
    pub agent_timeout: Duration,
    /// Name servers and search domain written into each slice.
    pub nameservers: Vec<Ipv4Addr>,
    pub search_domain: Option<DnsName>,
    /// How often the loop looks for due work when nothing wakes it.
    pub tick: Duration,
}

impl RunnerConfig {
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<RunnerConfig> {
        let nameservers = c
            .slice_nameservers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| anyhow::anyhow!("slice_nameservers: `{s}` is not an IPv4 address"))
            })
            .collect::<anyhow::Result<Vec<Ipv4Addr>>>()?;
        let search_domain = if c.slice_search_domain.is_empty() {
            None
        } else {
            Some(
                DnsName::parse(&c.slice_search_domain)
                    .map_err(|e| anyhow::anyhow!("slice_search_domain: {}", e.message))?,
            )
        };
        let reconcile_restart = match c.reconcile_policy.as_str() {
            "restart" => true,
            "report" => false,
            other => anyhow::bail!("reconcile_policy: `{other}` is neither restart nor report"),
        };
        Ok(RunnerConfig {
            reconcile_secs: c.reconcile_seconds as i64,
            reconcile_restart,
            concurrency: c.jobs_concurrency.max(1),
            per_node: c.jobs_per_node.max(1),
            lease_secs: c.job_lease_secs.max(5) as i64,
            retry_base_secs: c.job_retry_base_secs as i64,
            max_attempts: c.job_max_attempts.max(1) as i64,
            health_secs: c.node_health_secs.max(1) as i64,
            template_sync_secs: c.template_sync_minutes as i64 * 60,
            gateway_sync_secs: c.gateway_sync_minutes as i64 * 60,
            usage_secs: c.usage_minutes as i64 * 60,
            usage_keep_secs: c.usage_keep_days.max(1) as i64 * 86_400,
            node_stale_secs: (c.node_health_secs as i64 * 4).max(60),
            term_check_secs: c.term_check_seconds as i64,
            directory_check_secs: if c.ldap_url.trim().is_empty() || c.ldap_bind_dn.is_empty() {
                0
            } else {
                c.ldap_check_minutes as i64 * 60
            },
            term_grace_secs: c.term_grace_days as i64 * 86_400,
            agent_timeout: Duration::from_secs(c.agent_timeout_secs.max(1)),
            nameservers,
            search_domain,
            tick: Duration::from_millis(500),
        })
    }
}

pub struct JobRunner {
    /// What every job runs with.
    pub env: Arc<JobEnv>,
    mail: Arc<MailSender>,
}

/// Waits before retry number `attempt` (1 = the first retry): base, 2 base, 4 base, ...,
/// up to ten minutes, each within ±25 %.
pub fn backoff(base: i64, attempt: i64) -> i64 {
    if base <= 0 {
        return 0;
    }
    let d = base
        .saturating_mul(1i64 << (attempt - 1).clamp(0, 20))
        .min(600);
    let jitter = d / 4;
    d + if jitter > 0 {
        rand::thread_rng().gen_range(-jitter..=jitter)
    } else {
        0
    }
}

impl JobRunner {
    pub fn new(ctx: Arc<Context>, cfg: RunnerConfig) -> anyhow::Result<Arc<JobRunner>> {
        let ca = crate::slave_link::pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
        let links = Arc::new(Links::new(
            ctx.db.clone(),
            ca.client_config()?,
            cfg.agent_timeout,
        ));
        let templates = Arc::new(TemplateDir::new(&ctx.config.os_templates_dir())?);
        let mail = Arc::new(MailSender::from_context(&ctx)?);
        let gateway = Arc::new(crate::gateway::Gateway::load(&ctx.config, &ctx.db)?);
        let owner = format!(
            "master-{}-{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Ok(Arc::new(JobRunner {
            env: Arc::new(JobEnv::new(ctx, links, owner, cfg, templates, gateway)),
            mail,
        }))
    }

    /// Makes the loop look for work now (a job was queued).
    pub fn wake(&self) {
        self.env.wake();
    }

    /// Asks every enabled node how it is, all at once, before any slice is placed.
    async fn first_health_round(self: &Arc<Self>) {
        let nodes = match self.env.ctx.db.run(|db| db.read(crate::nodes::list)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "listing nodes");
                return;
            }
        };
        let mut checks = JoinSet::new();
        for node in nodes.into_iter().filter(|n| n.enabled) {
            let this = self.clone();
            checks.spawn(async move {
                let _ = this.env.check_node(&node, None).await;
            });
        }
        while checks.join_next().await.is_some() {}
    }

    pub fn owner(&self) -> &str {
        &self.env.owner
    }

    /// Runs until `stop` turns true. Jobs left running by a previous process are taken again.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let owner = self.env.owner.clone();
        match self
            .env
            .ctx
            .db
            .run(move |db| db.write(|tx| queue::requeue_orphans(tx, &owner)))
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(jobs = n, "resuming jobs left unfinished by the last run")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not resume unfinished jobs"),
        }
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(self.env.cfg.tick);
        let mut renew = tokio::time::interval(Duration::from_secs(
            (self.env.cfg.lease_secs / 3).max(1) as u64,
        ));
        tokio::spawn(self.mail.clone().run(
            self.env.ctx.db.clone(),
            self.env.cfg.tick,
            stop.clone(),
        ));
        self.first_health_round().await;
        let mut schedule = super::schedule::Schedule::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
                _ = self.env.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = renew.tick() => {
                    let ids = self.env.slots.ids();
                    if !ids.is_empty() {
                        let (owner, lease) = (self.env.owner.clone(), self.env.cfg.lease_secs);
                        let _ = self.env.ctx.db.run(move |db| db.write(|tx| queue::renew(tx, &owner, &ids, lease))).await;
                    }
                    continue;
                }
            }
            let due = schedule.due(&self.env.cfg);
            if !due.is_empty() {
                let result = self
                    .env
                    .ctx
                    .db
                    .run(move |db| db.write(|tx| super::schedule::queue_due(tx, &due)))
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "queueing periodic work");
                }
            }
            let busy = self.env.slots.per_node();
            let free = self
                .env
                .cfg
                .concurrency
                .saturating_sub(self.env.slots.running());
            if free == 0 {
                continue;
            }
            let (owner, lease, per_node) = (
                self.env.owner.clone(),
                self.env.cfg.lease_secs,
                self.env.cfg.per_node,
            );
            let claimed = self
                .env
                .ctx
                .db
                .run(move |db| {
                    db.write(|tx| queue::claim(tx, &owner, lease, free, per_node, &busy))
                })
                .await;
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "claiming jobs");
                    continue;
                }
            };
            for job in claimed {
                self.env.slots.insert(job.id, job.node_id);
                let this = self.clone();
                // Every log line of the job carries its id, kind, slice and node.
                let span = tracing::info_span!(
                    "job",
                    id = job.id,
                    kind = %job.kind,
                    slice = job.slice_id,
                    node = job.node_id
                );
                tasks.spawn(
                    async move {
                        let outcome = super::execute(&this.env, &job).await;
                        // Out of the count before its outcome is written: once written, the
                        // job may be claimed again at once (a wait of 0 s), and that run must
                        // not be taken out of the count when this one ends.
                        this.env.slots.remove(job.id);
                        this.finish(&job, outcome).await;
                        this.env.wake();
                    }
                    .instrument(span),
                );
            }
        }
        tasks.abort_all();
    }

    async fn finish(&self, job: &Job, outcome: Outcome) {
        if matches!(outcome, Outcome::Finished) {
            tracing::debug!(outcome = "Finished", "job ran");
            return; // its end was written with its last step
        }
        let job = job.clone();
        let retry = (self.env.cfg.retry_base_secs, self.env.cfg.max_attempts);
        let owner = self.env.owner.clone();
        let log = format!("{outcome:?}");
        let result = self
            .env
            .ctx
            .db
            .run(move |db| db.write(|tx| record_outcome(tx, &job, outcome, retry, &owner)))
            .await;
        match result {
            Ok(()) => tracing::debug!(outcome = %log, "job ran"),
            Err(e) => {
                tracing::error!(error = %e, outcome = %log, "could not record a job's outcome")
            }
        }
    }
}

fn record_outcome(
    tx: &rusqlite::Transaction,
    job: &Job,
    outcome: Outcome,
    (base, max_attempts): (i64, i64),
    owner: &str,
) -> Result<()> {
    if !queue::still_ours(tx, job.id, owner)? {
        return Ok(()); // cancelled meanwhile
    }
    let fails_slice = matches!(
        job.kind(),
        Some(JobKind::Provision) | Some(JobKind::Destroy)
    );
    match outcome {
        Outcome::Done => queue::succeed(tx, job.id)?,
        Outcome::Abandoned | Outcome::Finished => {}
        Outcome::Wait(note, secs) => {
            // A node known not to answer: the job waits until the node's next answer wakes it
            // (`wake_for_node`, written after this in the store's order), not a few seconds.
            let parked = queue::waits_for_node(&note)
                && match job.node_id {
                    Some(n) => !crate::records::nodes::answers(tx, n)?,
                    None => false,
                };
            let secs = if parked {
                queue::NODE_DOWN_PARK_SECS
            } else {
                secs
            };
            queue::wait(tx, job.id, &note, secs)?
        }
        Outcome::Retry(e) if job.attempts < job.max_attempts.min(max_attempts) => {
            let delay = backoff(base, job.attempts);
            tracing::warn!(job = job.id, attempt = job.attempts, delay, error = %e, "job will be retried");
            queue::retry_later(tx, job.id, &e, delay)?;
            if let Some(s) = job.slice_id {
                slices::event(
                    tx,
                    s,
                    &format!(
                        "Attempt {} failed ({e}); trying again in {delay} s.",
                        job.attempts
                    ),
                )?;
            }
        }
        Outcome::Retry(e) | Outcome::Fail(e) => {
            tracing::warn!(job = job.id, error = %e, "job failed");
            queue::fail(tx, job.id, &e)?;
            if let Some(s) = job.slice_id {
                if fails_slice {
                    slices::fail(tx, s, &e)?;
                    if job.kind() == Some(JobKind::Provision) {
                        // What it took on its node is given back (now, or when the node
                        // answers again: the queued job is the mark).
                        if let Some(slice) = slices::get(tx, s)? {
                            if let (Some(node), Some(_)) = (slice.node_id, slice.veid) {
                                queue::enqueue(
                                    tx,
                                    JobKind::Release,
                                    s,
                                    Some(slice.user_id),
                                    Some(node),
                                )?;
                            }
                        }
                        // Staff get the command log; the student a plain note.
                        let slice =
                            slices::get(tx, s)?.ok_or(crate::error::Error::NotFound("slice"))?;
                        let mut data = slices::mail_data(tx, &slice)?;
                        let log: Vec<serde_json::Value> = crate::records::agent_log::command_log(tx, Some(job.id), None, 10)?
                            .into_iter()
                            .rev()
                            .map(|l| serde_json::json!({"command": l.command, "code": l.code, "returned": l.returned}))
                            .collect();
                        data["log"] = serde_json::json!(log);
                        data["reason"] = serde_json::json!(e);
                        crate::mail::to_staff(
                            tx,
                            crate::mail::Kind::ProvisioningFailedStaff,
                            data,
                            Some(s),
                        )?;
                        slices::mail_owner(
                            tx,
                            s,
                            crate::mail::Kind::ProvisioningFailed,
                            serde_json::json!({}),
                        )?;
                    }
                } else {
                    slices::event(tx, s, &format!("{} failed: {e}", job.kind))?;
                }
            }
        }
    }
    Ok(())
}
