//! The job loop: durable workflows that take an approved request to a running slice, and
//! back. Jobs are rows (`queue.rs`); the runner (`runner.rs`) claims them with a lease, runs
//! several at once (bounded overall and per node), and retries with back-off. Each step with
//! an effect is recorded in the job's checkpoint in the same transaction as the effect's
//! record, and every agent command is idempotent, so a master killed at any moment resumes
//! where it was and never does a step twice.

/// `step!(result)`: the value, or return the `Outcome` the step ended with.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(o) => return o,
        }
    };
}

pub mod env;
mod kinds;
pub mod links;
mod placement;
pub mod queue;
pub mod runner;

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::slave_link::{code, LinkError, Reply};
use crate::store::now;

pub use env::JobEnv;
pub use kinds::execute;
pub use links::Links;
pub use runner::{JobRunner, RunnerConfig};

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Provision,
    Start,
    Stop,
    Restart,
    Destroy,
    NodeHealth,
    TemplateSync,
    /// Makes the gateway match the database: for one user (`user_id`) or all.
    Gateway,
    /// Gives a slice its current keys (the gateway's hop key for its user).
    Keys,
    /// Re-makes a slice on the node staff chose (`wanted_node`), then provisions it there.
    Move,
    /// Samples what a node's running slices use.
    Usage,
    /// Puts a slice's (new) plan in force on its node, live if it runs.
    Limits,
}

impl JobKind {
    pub const ALL: [JobKind; 12] = [
        JobKind::Provision,
        JobKind::Start,
        JobKind::Stop,
        JobKind::Restart,
        JobKind::Destroy,
        JobKind::NodeHealth,
        JobKind::TemplateSync,
        JobKind::Gateway,
        JobKind::Keys,
        JobKind::Move,
        JobKind::Usage,
        JobKind::Limits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Provision => "provision",
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Destroy => "destroy",
            JobKind::NodeHealth => "node_health",
            JobKind::TemplateSync => "template_sync",
            JobKind::Gateway => "gateway",
            JobKind::Keys => "keys",
            JobKind::Move => "move",
            JobKind::Usage => "usage",
            JobKind::Limits => "limits",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn past_tense(self) -> &'static str {
        match self {
            JobKind::Provision => "provisioned",
            JobKind::Start => "started",
            JobKind::Stop => "stopped",
            JobKind::Restart => "restarted",
            JobKind::Destroy => "destroyed",
            JobKind::NodeHealth => "checked",
            JobKind::TemplateSync => "synced",
            JobKind::Gateway => "applied",
            JobKind::Keys => "given its keys",
            JobKind::Move => "moved",
            JobKind::Usage => "sampled",
            JobKind::Limits => "given its new plan",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            JobKind::Provision => "Provisioning",
            JobKind::Start => "Start",
            JobKind::Stop => "Stop",
            JobKind::Restart => "Restart",
            JobKind::Destroy => "Destroy",
            JobKind::NodeHealth => "Health check",
            JobKind::TemplateSync => "Template sync",
            JobKind::Gateway => "Gateway apply",
            JobKind::Keys => "Key update",
            JobKind::Move => "Move",
            JobKind::Usage => "Usage sample",
            JobKind::Limits => "Plan change",
        }
    }
}

/// Queues a job for a slice (runs as soon as a worker is free).
pub fn enqueue(
    conn: &Connection,
    kind: JobKind,
    slice_id: i64,
    user_id: Option<i64>,
    node_id: Option<i64>,
) -> Result<i64> {
    insert(conn, kind, Some(slice_id), user_id, node_id, now())
}

/// Queues a job about a node (health, template sync) unless one is already waiting.
pub fn enqueue_for_node(
    conn: &Connection,
    kind: JobKind,
    node_id: i64,
    at: i64,
) -> Result<Option<i64>> {
    let waiting: i64 = conn.query_row(
        "SELECT count(*) FROM jobs WHERE kind = ?1 AND node_id = ?2 AND state IN ('queued', 'running')",
        params![kind.as_str(), node_id],
        |r| r.get(0),
    )?;
    if waiting > 0 {
        return Ok(None);
    }
    insert(conn, kind, None, None, Some(node_id), at).map(Some)
}

/// Queues a gateway run: for one user, or for all (unless one is already waiting).
pub fn enqueue_gateway(conn: &Connection, user_id: Option<i64>) -> Result<Option<i64>> {
    let waiting: i64 = conn.query_row(
        "SELECT count(*) FROM jobs WHERE kind = 'gateway' AND user_id IS ?1 AND state = 'queued'",
        params![user_id],
        |r| r.get(0),
    )?;
    if waiting > 0 {
        return Ok(None);
    }
    insert(conn, JobKind::Gateway, None, user_id, None, now()).map(Some)
}

fn insert(
    conn: &Connection,
    kind: JobKind,
    slice_id: Option<i64>,
    user_id: Option<i64>,
    node_id: Option<i64>,
    at: i64,
) -> Result<i64> {
    let max_attempts = match kind {
        JobKind::NodeHealth | JobKind::Usage => 1,
        _ => 8,
    };
    conn.prepare_cached(
        "INSERT INTO jobs (kind, state, max_attempts, run_after, slice_id, user_id, node_id, created_at, updated_at)
         VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![kind.as_str(), max_attempts, at, slice_id, user_id, node_id, now()])?;
    Ok(conn.last_insert_rowid())
}

/// How a run of a job ended.
#[derive(Debug)]
pub enum Outcome {
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

fn db_err(e: Error) -> Outcome {
    Outcome::Retry(format!("database: {e}"))
}
