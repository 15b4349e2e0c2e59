//! The `jobs` table: the kinds, queueing, claiming with a lease, checkpoints, and how a job
//! ends.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::Result;
use crate::store::now;

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
    /// Compares a node's containers with the database and puts right what drifted.
    Reconcile,
    /// Gives back what a provision that failed for good took on its node (the container, its
    /// address and id).
    Release,
    /// Removes, on its node, the orphan containers staff asked to remove.
    RemoveOrphans,
    /// Moves slices through the stages of their end: warnings, stop, destroy (`ops::term`).
    Term,
    /// Packs the archive of a slice's /home on its node (`ops::archives`).
    Export,
    /// Takes, restores and deletes a slice's snapshots as asked, then reads the node's list
    /// back (`ops::snapshots`).
    Snapshots,
    /// Looks the directory's accounts up again: one it no longer finds is disabled here.
    Directory,
}

impl JobKind {
    pub const ALL: [JobKind; 19] = [
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
        JobKind::Reconcile,
        JobKind::Release,
        JobKind::RemoveOrphans,
        JobKind::Term,
        JobKind::Export,
        JobKind::Snapshots,
        JobKind::Directory,
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
            JobKind::Reconcile => "reconcile",
            JobKind::Release => "release",
            JobKind::RemoveOrphans => "remove_orphans",
            JobKind::Term => "term",
            JobKind::Export => "export",
            JobKind::Snapshots => "snapshots",
            JobKind::Directory => "directory",
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
            JobKind::Reconcile => "reconciled",
            JobKind::Release => "cleaned up",
            JobKind::RemoveOrphans => "rid of its orphans",
            JobKind::Term => "checked for ends",
            JobKind::Export => "packed",
            JobKind::Snapshots => "given its snapshots",
            JobKind::Directory => "checked against the directory",
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
            JobKind::Reconcile => "Reconcile",
            JobKind::Release => "Clean-up",
            JobKind::RemoveOrphans => "Orphan removal",
            JobKind::Term => "Term check",
            JobKind::Export => "Archive of /home",
            JobKind::Snapshots => "Snapshots",
            JobKind::Directory => "Directory check",
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
    let waiting: i64 = conn.prepare_cached("SELECT count(*) FROM jobs WHERE kind = ?1 AND node_id = ?2 AND state IN ('queued', 'running')")?
            .query_row(params![kind.as_str(), node_id],
        |r| r.get(0),
    )?;
    if waiting > 0 {
        return Ok(None);
    }
    insert(conn, kind, None, None, Some(node_id), at).map(Some)
}

/// Queues a job about nothing in particular (the term check) unless one is already waiting
/// or running.
pub fn enqueue_once(conn: &Connection, kind: JobKind) -> Result<Option<i64>> {
    let waiting: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM jobs WHERE kind = ?1 AND state IN ('queued', 'running')",
        )?
        .query_row([kind.as_str()], |r| r.get(0))?;
    if waiting > 0 {
        return Ok(None);
    }
    insert(conn, kind, None, None, None, now()).map(Some)
}

/// Queues a gateway run: for one user, or for all (unless one is already waiting).
pub fn enqueue_gateway(conn: &Connection, user_id: Option<i64>) -> Result<Option<i64>> {
    let waiting: i64 = conn.prepare_cached("SELECT count(*) FROM jobs WHERE kind = 'gateway' AND user_id IS ?1 AND state = 'queued'")?
            .query_row(params![user_id],
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
        JobKind::NodeHealth
        | JobKind::Usage
        | JobKind::Reconcile
        | JobKind::Term
        | JobKind::Directory => 1,
        JobKind::Export => 3,
        _ => 8,
    };
    // A job for a node known not to answer waits for it from the start, as if it had tried
    // (`park_for_node`); the node's health checks go on as ever. A disabled node has no health
    // checks to wake its jobs, and its last error may be old: its jobs try as they come.
    let down: Option<String> = match node_id {
        Some(n) if kind != JobKind::NodeHealth => conn
            .prepare_cached("SELECT last_error FROM nodes WHERE id = ?1 AND enabled")?
            .query_row([n], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten(),
        _ => None,
    };
    let (run_after, note) = match down {
        Some(e) => (
            at.max(now() + NODE_DOWN_PARK_SECS),
            format!("{NODE_DOWN} (node_info: {e})"),
        ),
        None => (at, String::new()),
    };
    conn.prepare_cached(
        "INSERT INTO jobs (kind, state, max_attempts, run_after, slice_id, user_id, node_id, last_error, created_at, updated_at)
         VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![kind.as_str(), max_attempts, run_after, slice_id, user_id, node_id, note, now()])?;
    Ok(conn.last_insert_rowid())
}

/// The states a job row can be in.
pub const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// How a job's note begins while it waits for a node that does not answer (down, rebooting):
/// not a failure, and no try is spent meanwhile.
pub const NODE_DOWN: &str = "waiting for the node to answer";

/// Whether a job's note says it waits for its node to answer.
pub fn waits_for_node(note: &str) -> bool {
    note.starts_with(NODE_DOWN)
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub last_error: String,
    pub checkpoint: serde_json::Value,
    pub slice_id: Option<i64>,
    pub node_id: Option<i64>,
    pub user_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The name of the node it is about, if any (read with the row, for pages).
    pub node: Option<String>,
    /// Queued while its node does not answer: shown as "waiting for node X".
    pub waiting_for_node: bool,
}

impl Job {
    pub fn kind(&self) -> Option<JobKind> {
        JobKind::parse(&self.kind)
    }

    /// True when the step with an effect named `step` is already done.
    pub fn done(&self, step: &str) -> bool {
        self.checkpoint
            .get(step)
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

const COLUMNS: &str =
    "id, kind, state, attempts, max_attempts, run_after, lease_owner, last_error, checkpoint, \
    slice_id, node_id, user_id, created_at, updated_at, finished_at, \
    (SELECT name FROM nodes WHERE nodes.id = jobs.node_id)";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let cp: String = r.get(8)?;
    let (state, last_error): (String, String) = (r.get(2)?, r.get(7)?);
    Ok(Job {
        waiting_for_node: state == "queued" && waits_for_node(&last_error),
        id: r.get(0)?,
        kind: r.get(1)?,
        state,
        attempts: r.get(3)?,
        max_attempts: r.get(4)?,
        run_after: r.get(5)?,
        lease_owner: r.get(6)?,
        last_error,
        checkpoint: serde_json::from_str(&cp).unwrap_or_else(|_| serde_json::json!({})),
        slice_id: r.get(9)?,
        node_id: r.get(10)?,
        user_id: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        finished_at: r.get(14)?,
        node: r.get(15)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// Claims up to `limit` jobs that are due (or whose lease ran out), at most `per_node` running
/// per node counting `busy`. Runs inside the caller's write transaction, so two claims can
/// never take the same job.
pub fn claim(
    conn: &Connection,
    owner: &str,
    lease_secs: i64,
    limit: usize,
    per_node: usize,
    busy: &HashMap<i64, usize>,
) -> Result<Vec<Job>> {
    if limit == 0 {
        return Ok(vec![]);
    }
    let t = now();
    // Two index lookups (due jobs; expired leases) rather than one scan of the table.
    let want = (limit * 4 + 16) as i64;
    let mut candidates = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'queued' AND run_after <= ?1 ORDER BY run_after, id LIMIT ?2"
        ))?
        .query_map(params![t, want], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    candidates.extend(
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND lease_until < ?1 ORDER BY lease_until LIMIT ?2"
        ))?
        .query_map(params![t, want], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    let mut taken: HashMap<i64, usize> = busy.clone();
    let mut out = Vec::new();
    for mut job in candidates {
        if out.len() >= limit {
            break;
        }
        if let Some(node) = job.node_id {
            let n = taken.entry(node).or_default();
            if *n >= per_node {
                continue;
            }
            *n += 1;
        }
        conn.prepare_cached(
            "UPDATE jobs SET state = 'running', lease_owner = ?2, lease_until = ?3, attempts = attempts + 1,
                             updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![job.id, owner, t + lease_secs, t])?;
        job.state = "running".into();
        job.attempts += 1;
        job.lease_owner = Some(owner.to_string());
        out.push(job);
    }
    Ok(out)
}

/// Keeps the leases of running jobs alive.
pub fn renew(conn: &Connection, owner: &str, ids: &[i64], lease_secs: i64) -> Result<()> {
    let t = now();
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
    )?;
    for id in ids {
        stmt.execute(params![id, owner, t + lease_secs])?;
    }
    Ok(())
}

/// After a restart (the data folder is locked to one master), jobs left running by the dead
/// process are queued again at once rather than waiting for their leases to run out.
pub fn requeue_orphans(conn: &Connection, owner: &str) -> Result<usize> {
    Ok(conn.prepare_cached("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, run_after = ?2,
                         attempts = max(attempts - 1, 0), updated_at = ?2
         WHERE state = 'running' AND (lease_owner IS NULL OR lease_owner <> ?1)")?
            .execute(params![owner, now()],
    )?)
}

/// The kind and last note of the oldest job about the slice that is queued or running.
pub fn in_flight_kind(conn: &Connection, slice_id: i64) -> Result<Option<(JobKind, String)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT kind, last_error FROM jobs WHERE slice_id = ?1 AND state IN ('queued', 'running')
             ORDER BY id LIMIT 1")?
            .query_row([slice_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(k, note)| JobKind::parse(&k).map(|k| (k, note))))
}

/// [`in_flight_kind`] of every slice of a user, by slice (one statement for a dashboard).
pub fn in_flight_for_user(
    conn: &Connection,
    user_id: i64,
) -> Result<HashMap<i64, (JobKind, String)>> {
    let mut stmt = conn.prepare_cached(
        // The user's few slices first (CROSS JOIN keeps that order), then their jobs by
        // index: never a walk over every queued job (a fan-out queues thousands).
        "SELECT j.slice_id, j.kind, j.last_error FROM slices s CROSS JOIN jobs j
          WHERE s.user_id = ?1 AND j.slice_id = s.id AND j.state IN ('queued', 'running')
          ORDER BY j.id DESC",
    )?;
    let mut out = HashMap::new();
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    // Oldest last, so the oldest job of each slice is the one kept (as in_flight_kind).
    for row in rows {
        let (id, kind, note) = row?;
        if let Some(kind) = JobKind::parse(&kind) {
            out.insert(id, (kind, note));
        }
    }
    Ok(out)
}

/// Whether a job about the slice is queued or running.
pub fn in_flight(conn: &Connection, slice_id: i64) -> Result<bool> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM jobs WHERE slice_id = ?1 AND state IN ('queued', 'running')",
        )?
        .query_row([slice_id], |r| r.get(0))?;
    Ok(n > 0)
}

/// The node a job works on, once it is known (a provision learns it when the slice is placed).
pub fn set_node(conn: &Connection, id: i64, node_id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE jobs SET node_id = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, node_id, now()])?;
    Ok(())
}

/// Records a step with an effect as done.
pub fn checkpoint(conn: &Connection, id: i64, step: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET checkpoint = json_set(checkpoint, '$.' || ?2, json('true')), updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, step, now()])?;
    Ok(())
}

pub fn succeed(conn: &Connection, id: i64) -> Result<()> {
    let t = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, last_error = '',
                         finished_at = ?2, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, t])?;
    Ok(())
}

/// Records the job as succeeded if it is still this owner's (not cancelled or taken over
/// meanwhile), in the transaction of its last step: one commit less per job.
pub fn succeed_if_ours(conn: &Connection, id: i64, owner: &str) -> Result<bool> {
    if !still_ours(conn, id, owner)? {
        return Ok(false);
    }
    succeed(conn, id)?;
    Ok(true)
}

pub fn fail(conn: &Connection, id: i64, error: &str) -> Result<()> {
    let t = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_until = NULL, last_error = ?2,
                         finished_at = ?3, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, error, t])?;
    Ok(())
}

/// Tries again after `delay_secs`.
pub fn retry_later(conn: &Connection, id: i64, error: &str, delay_secs: i64) -> Result<()> {
    let t = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, last_error = ?2,
                         run_after = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, error, t + delay_secs, t])?;
    Ok(())
}

/// Waits (not a failure: the attempt does not count), for example for room on a node.
pub fn wait(conn: &Connection, id: i64, note: &str, delay_secs: i64) -> Result<()> {
    let t = now();
    conn.prepare_cached("UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, last_error = ?2,
                         run_after = ?3, attempts = max(attempts - 1, 0), updated_at = ?4 WHERE id = ?1")?
            .execute(params![id, note, t + delay_secs, t],
    )?;
    Ok(())
}

/// How long a job waits for a node known not to answer; the node's next answer wakes it at
/// once ([`wake_for_node`]), so this is only a bound.
pub const NODE_DOWN_PARK_SECS: i64 = 3600;

/// Parks the queued jobs of a node that does not answer (all but its health checks): they wait
/// for it without a try spent, until it answers again or [`NODE_DOWN_PARK_SECS`] pass. Run in
/// the transaction that records the failed contact, so no answer recorded later is missed.
/// Jobs parked already (due in more than ten minutes) are left as they are: a node down for a
/// day does not have its thousands of jobs written again at every health check.
pub fn park_for_node(conn: &Connection, node_id: i64, error: &str) -> Result<usize> {
    let t = now();
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET run_after = ?2, last_error = ?3, updated_at = ?4
              WHERE node_id = ?1 AND state = 'queued' AND kind <> 'node_health'
                AND run_after < ?4 + 600",
        )?
        .execute(params![
            node_id,
            t + NODE_DOWN_PARK_SECS,
            format!("{NODE_DOWN} ({error})"),
            t
        ])?)
}

/// Wakes the jobs that wait for a node to answer, now that it did.
pub fn wake_for_node(conn: &Connection, node_id: i64) -> Result<usize> {
    let t = now();
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET run_after = ?2
              WHERE node_id = ?1 AND state = 'queued' AND run_after > ?2
                AND substr(last_error, 1, length(?3)) = ?3",
        )?
        .execute(params![node_id, t, NODE_DOWN])?)
}

/// Wakes the provisioning jobs that wait for room (a slice was destroyed, a node came).
pub fn wake_waiting(conn: &Connection) -> Result<usize> {
    Ok(conn.prepare_cached("UPDATE jobs SET run_after = ?1 WHERE kind = 'provision' AND state = 'queued' AND run_after > ?1
           AND slice_id IN (SELECT id FROM slices WHERE state = 'queued')")?
            .execute(params![now()],
    )?)
}

/// Staff: run a failed or cancelled job again (from its checkpoint).
pub fn retry_now(conn: &Connection, id: i64) -> Result<bool> {
    let t = now();
    Ok(conn.prepare_cached("UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?2, finished_at = NULL, updated_at = ?2
         WHERE id = ?1 AND state IN ('failed', 'cancelled')")?
            .execute(params![id, t],
    )? == 1)
}

/// Staff: cancel a job that has not finished (a running one stops at its next step).
pub fn cancel(conn: &Connection, id: i64) -> Result<bool> {
    let t = now();
    Ok(conn.prepare_cached("UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, finished_at = ?2,
                         updated_at = ?2 WHERE id = ?1 AND state IN ('queued', 'running')")?
            .execute(params![id, t],
    )? == 1)
}

/// Still ours to run? (Cancelled meanwhile, or taken by another after our lease ran out.)
pub fn still_ours(conn: &Connection, id: i64, owner: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )?
        .query_row(params![id, owner], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Jobs for the shell and the staff page: failed first, then the newest.
pub fn list(conn: &Connection, state: Option<&str>, limit: u32) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1)
         ORDER BY state = 'failed' DESC, id DESC LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![state, limit], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// One page of jobs (failed first, then the newest), filtered by state and kind, and how many
/// match in all.
pub fn page(
    conn: &Connection,
    state: Option<&str>,
    kind: Option<&str>,
    routine: bool,
    offset: u64,
    limit: u32,
) -> Result<(Vec<Job>, u64)> {
    // The checks the master runs on its own every few minutes are left out unless asked for
    // (or named, or failed): the page is about the work people asked for.
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2)
               AND (?3 OR ?2 IS NOT NULL OR state = 'failed' OR NOT ({ROUTINE}))"
        ))?
        .query_row(params![state, kind, routine], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2)
           AND (?3 OR ?2 IS NOT NULL OR state = 'failed' OR NOT ({ROUTINE}))
         ORDER BY state = 'failed' DESC, id DESC LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt
        .query_map(
            params![state, kind, routine, limit, offset as i64],
            from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total as u64))
}

/// Which jobs are routine: the periodic checks of every node, and the whole gateway's
/// periodic sync (one user's gateway job follows something someone did).
const ROUTINE: &str = "kind IN ('node_health', 'template_sync', 'usage', 'reconcile')
                       OR (kind = 'gateway' AND user_id IS NULL)";

/// How many routine jobs (see [`page`]) the page leaves out.
pub fn routine_hidden(conn: &Connection, state: Option<&str>) -> Result<u64> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM jobs WHERE (?1 IS NULL OR state = ?1) AND state <> 'failed'
               AND ({ROUTINE})"
        ))?
        .query_row(params![state], |r| r.get::<_, i64>(0))? as u64)
}

/// Removes finished health checks and usage samples' jobs older than `before`, with their
/// agent log lines (not worth keeping).
pub fn prune_checks(conn: &Connection, before: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM agent_log WHERE command IN ('node_info', 'usage') AND at < ?1
           AND job_id IN (SELECT id FROM jobs WHERE kind IN ('node_health', 'usage'))",
    )?
    .execute([before])?;
    conn.prepare_cached("DELETE FROM jobs WHERE kind = 'node_health' AND state IN ('succeeded', 'failed') AND finished_at < ?1
           AND id NOT IN (SELECT job_id FROM agent_log WHERE job_id IS NOT NULL)")?
            .execute([before],
    )?;
    Ok(())
}

/// A slice's jobs, newest first.
pub fn for_slice(conn: &Connection, slice_id: i64) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE slice_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt
        .query_map([slice_id], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Cancels a slice's jobs that have not started (they are moot: it is destroyed or moved).
pub fn cancel_queued_for(conn: &Connection, slice_id: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2
         WHERE slice_id = ?1 AND state = 'queued'",
        )?
        .execute(params![slice_id, now()])?)
}
