//! Provisioning: place the slice on a node with room (or wait in line), create it there from its template, start it, set up the gateway login, tell the student.

use crate::jobs::env::JobEnv;
use crate::ops::placement::place;

use crate::error::Error;
use crate::gateway::Scope;
use crate::jobs::queue::Job;
use crate::jobs::Outcome;
use crate::ops::slices::{self, State};
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let room_seen = env.room_generation();
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    if matches!(
        slice.state,
        State::Destroying | State::Destroyed | State::Denied | State::Running
    ) {
        return Outcome::Done;
    }
    let node = match node {
        Some(n) if slice.veid.is_some() && slice.ip.is_some() => n,
        _ => {
            let (s, job_id, stale) = (slice.clone(), job.id, env.cfg.node_stale_secs);
            // The job names its node in the placement's own transaction.
            let placed = step!(
                env.db(move |db| db.write(|tx| {
                    let node = place(tx, &s, job_id, stale)?;
                    if let Some(n) = &node {
                        crate::records::jobs::set_node(tx, job_id, n.id)?;
                    }
                    Ok(node)
                }))
                .await
            );
            match placed {
                Some(n) => n,
                None => {
                    let s = slice.clone();
                    let position = step!(
                        env.db(move |db| db.write(|tx| {
                            if s.state != State::Queued {
                                slices::set_state(
                                    tx,
                                    s.id,
                                    State::Queued,
                                    "",
                                    "No node has room right now; it waits in the queue.",
                                )?;
                            }
                            let fresh = slices::get(tx, s.id)?.ok_or(Error::NotFound("slice"))?;
                            slices::queue_position(tx, &fresh)
                        }))
                        .await
                    );
                    // Room appears when a slice is destroyed (which wakes this job) or a node
                    // reports in, at the latest at the next health check.
                    let wait = if env.room_generation() != room_seen {
                        0 // room changed while this ran: look again at once
                    } else {
                        env.cfg.health_secs.clamp(1, 30)
                    };
                    return Outcome::Wait(
                        format!("no node has room (place {position} in the queue)"),
                        wait,
                    );
                }
            }
        }
    };
    // A job claimed before its node was known was not counted against that node's limit
    // (`jobs_per_node`): it goes on if the node has a place free, else it takes its turn there
    // (the loop claims it again when one is).
    if job.node_id != Some(node.id) && !env.slots.take(job.id, node.id, env.cfg.per_node) {
        let (job_id, node_id) = (job.id, node.id);
        step!(
            env.db(move |db| db.write(|tx| crate::records::jobs::set_node(tx, job_id, node_id)))
                .await
        );
        return Outcome::Wait(format!("placed on node {}", node.name), 0);
    }
    let (slice, _) = step!(env.slice_and_node(slice_id).await);
    let mut spec = step!(env.spec(&slice).await);
    if !job.done("gateway") {
        if !env.ours(job).await {
            return Outcome::Abandoned;
        }
        let report = step!(env.gateway_apply(Scope::User(spec.username.clone())).await);
        let note = if report.clashes.iter().any(|c| c == spec.username.as_str()) {
            format!(
                "No gateway login yet: an account named {} exists on the gateway and was not \
                 made by Slices (staff are told). The slice is made; the login follows once \
                 that is resolved.",
                spec.username
            )
        } else {
            "Gateway login ready.".into()
        };
        step!(
            env.record(job, "gateway", "creating the container", note)
                .await
        );
        spec = step!(env.spec(&slice).await);
    }
    if spec.keys.is_empty() {
        // A name that clashes on the gateway gets no login (staff see why on the user's page):
        // the slice is made anyway, and its key follows once the clash is resolved.
        let user_id = slice.user_id;
        let blocked = step!(
            env.read(move |c| crate::records::gateway::problem(c, user_id))
                .await
        );
        if blocked.is_none() {
            return Outcome::Retry(format!(
                "the gateway holds no hop key for {} yet",
                spec.username
            ));
        }
    }
    if !job.done("created") {
        if !env.ours(job).await {
            return Outcome::Abandoned;
        }
        let create = Command::CreateEnv(Box::new(spec.clone()));
        let created = "Container created.".to_string();
        step!(
            env.call_step(job, &node, &create, "created", "starting", created)
                .await
        );
    }
    if !job.done("started") {
        if !env.ours(job).await {
            return Outcome::Abandoned;
        }
        let start = Command::StartEnv(spec.id);
        let started = "Container started.".to_string();
        step!(
            env.call_step(job, &node, &start, "started", "finishing", started)
                .await
        );
    }
    let message = format!("Running on node {} at {}.", node.name, spec.ip);
    let root = spec.root;
    let (job_id, owner) = (job.id, env.owner.clone());
    step!(
        env.db(move |db| db.write(|tx| {
            // The job's end in the same transaction as the slice's.
            crate::records::jobs::succeed_if_ours(tx, job_id, &owner)?;
            slices::set_state(tx, slice_id, State::Running, "", &message)?;
            // A student whose name clashes on the gateway has no login there yet: the mail
            // says so instead of giving a command that cannot work.
            let owner = slices::get(tx, slice_id)?.map(|s| s.user_id);
            let no_login = match owner {
                Some(u) => crate::records::gateway::problem(tx, u)?.is_some(),
                None => false,
            };
            slices::mail_owner(
                tx,
                slice_id,
                crate::mail::Kind::SliceReady,
                serde_json::json!({ "no_login": no_login, "root": root }),
            )
        }))
        .await
    );
    Outcome::Finished
}
