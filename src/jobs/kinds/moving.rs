//! A move or a reinstall (`ops::slices::begin_move`): a new container is placed, made and
//! started while the old one stays as it was; the old one is stopped and its /home packed,
//! carried over the links into the new one and checked by SHA-256 on the way in; then the
//! slice takes its new place, the gateway follows, and the old container is removed. If it
//! fails for good before the switch, what it made is removed and the slice is left as it was.

use crate::domain::VeId;
use crate::gateway::Scope;
use crate::jobs::env::JobEnv;
use crate::jobs::queue::{self, Job};
use crate::jobs::{judge, JobKind, Outcome};
use crate::nodes::Node;
use crate::ops::slices::{self, State, STEPS};
use crate::records::moves::{self, Move};
use crate::slave_link::Command;
use crate::templates::Sha256Hex;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let m = step!(env.read(move |c| moves::get(c, slice_id)).await);
    let Some(m) = m else {
        return Outcome::Done; // ended meanwhile (or asked before moves kept files)
    };
    let outcome = if m.switched {
        finish(env, job, &m).await
    } else {
        match carry(env, job, &m).await {
            Outcome::Done => finish(env, job, &m).await,
            other => other,
        }
    };
    if let Some(why) = env.gives_up(job, &outcome) {
        let m = step!(env.read(move |c| moves::get(c, slice_id)).await);
        match m {
            Some(m) if !m.switched => undo(env, job, &m, &why).await,
            Some(_) => {
                // Only the old container's removal is left: it is listed as an orphan on
                // its node for staff, and the slice is done moving.
                let note = format!(
                    "The old container could not be removed ({why}): staff see it as an orphan on its node."
                );
                step!(
                    env.db(move |db| db.write(|tx| {
                        moves::remove(tx, slice_id)?;
                        slices::set_step(tx, slice_id, "")?;
                        slices::event(tx, slice_id, &note)
                    }))
                    .await
                );
            }
            None => {}
        }
    }
    outcome
}

fn veid(v: Option<i64>) -> Result<VeId, Outcome> {
    VeId::new(v.unwrap_or(0) as u64).map_err(|e| Outcome::Fail(e.message))
}

async fn node(env: &JobEnv, id: Option<i64>) -> Result<Option<Node>, Outcome> {
    match id {
        Some(id) => env.read(move |c| crate::nodes::by_id(c, id)).await,
        None => Ok(None),
    }
}

/// Up to the switch: the new place, its container made and started, the old /home in it.
async fn carry(env: &JobEnv, job: &Job, m: &Move) -> Outcome {
    let slice_id = m.slice_id;
    let (slice, _) = step!(env.slice_and_node(slice_id).await);
    let mut m = m.clone();
    if m.to_node.is_none() {
        let (wanted, template, plan, stale) = (
            m.wanted,
            m.template.clone(),
            slice.plan_id,
            env.cfg.node_stale_secs,
        );
        let placed = step!(
            env.db(move |db| db.write(|tx| {
                let memory = slices::plan_limits(tx, plan)?.memory_mb;
                let found =
                    crate::ops::placement::find_place(tx, wanted, &template, memory, stale)?;
                if let Some((node, veid, ip)) = &found {
                    moves::set_place(tx, slice_id, node.id, *veid, ip)?;
                    slices::set_step(tx, slice_id, STEPS[1])?;
                    slices::event(
                        tx,
                        slice_id,
                        &format!("The new container is {veid} at {ip} on node {}.", node.name),
                    )?;
                }
                moves::get(tx, slice_id)
            }))
            .await
        );
        match placed {
            Some(p) if p.to_node.is_some() => m = p,
            _ => {
                return Outcome::Wait(
                    "no node has room for the new container yet; the slice stays as it was".into(),
                    env.cfg.health_secs.clamp(1, 30),
                )
            }
        }
    }
    let Some(to) = step!(node(env, m.to_node).await) else {
        return Outcome::Fail("the node chosen for the new container was removed".into());
    };
    let to_id = step!(veid(m.to_veid));
    // The new container's spec: the slice's, at the new place, from the move's template.
    let mut new = slice.clone();
    new.veid = m.to_veid;
    new.ip = m.to_ip.clone();
    new.template = m.template.clone();
    let spec = step!(env.spec(&new).await);
    for (done, next, cmd, message) in [
        (
            "created",
            STEPS[1],
            Command::CreateEnv(Box::new(spec.clone())),
            "New container made.",
        ),
        (
            "started",
            STEPS[2],
            Command::StartEnv(to_id),
            "New container started.",
        ),
    ] {
        if job.done(done) {
            continue;
        }
        if !env.ours(job).await {
            return Outcome::Abandoned;
        }
        step!(
            env.call_step(job, &to, &cmd, done, next, message.into())
                .await
        );
    }
    if m.keep_home {
        let Some(from) = step!(node(env, m.from_node).await) else {
            return Outcome::Fail("the node the slice is on was removed".into());
        };
        let from_id = step!(veid(m.from_veid));
        if m.was == "running" && !job.done("stopped_old") {
            // Stopped, so /home is packed as it is and nothing is written after.
            let r = env
                .links
                .call(
                    &from,
                    Some(job.id),
                    Some(slice_id),
                    &Command::StopEnv(from_id),
                )
                .await;
            step!(judge("stop_env", r));
            step!(
                env.record(
                    job,
                    "stopped_old",
                    STEPS[2],
                    "The old container is stopped, so /home is packed as it is.".into()
                )
                .await
            );
        }
        if m.sha256.is_none() {
            let r = env
                .links
                .call(
                    &from,
                    Some(job.id),
                    Some(slice_id),
                    &Command::ExportHome(from_id),
                )
                .await;
            // The host's tar failed: trying again packs the same files the same way.
            if let Ok(reply) = &r {
                if reply.code == crate::slave_link::code::FAILED {
                    return Outcome::Fail(format!("packing /home: {}", reply.text()));
                }
            }
            let reply = step!(judge("export_home", r));
            let (size, sha) = step!(super::export::made(&reply));
            let note = format!(
                "/home packed: {} (SHA-256 {}).",
                crate::domain::size_text(size),
                &sha.as_str()[..12]
            );
            let sha_text = sha.as_str().to_string();
            step!(
                env.db(move |db| db.write(|tx| {
                    moves::set_archive(tx, slice_id, &sha_text, size)?;
                    slices::set_step(tx, slice_id, STEPS[3])?;
                    slices::event(tx, slice_id, &note)
                }))
                .await
            );
            m.sha256 = Some(sha.as_str().to_string());
            m.size = Some(size);
        }
        if !job.done("imported") {
            let sha = step!(Sha256Hex::parse(m.sha256.as_deref().unwrap_or(""))
                .map_err(|e| Outcome::Fail(e.message)));
            let size = m.size.unwrap_or(0) as u64;
            let copied = env
                .links
                .copy_archive((&from, from_id), (&to, to_id), (&sha, size))
                .await;
            if let Err(e) = copied {
                return match e {
                    crate::jobs::links::ArchiveError::Refused(_)
                    | crate::jobs::links::ArchiveError::Corrupt { .. } => {
                        Outcome::Fail(format!("carrying /home over: {e}"))
                    }
                    _ => Outcome::Retry(format!("carrying /home over: {e}")),
                };
            }
            step!(
                env.record(
                    job,
                    "imported",
                    STEPS[4],
                    format!(
                        "/home carried over to node {} and unpacked; its SHA-256 matched.",
                        to.name
                    )
                )
                .await
            );
        }
    }
    if m.was == "stopped" && !job.done("stopped_new") {
        let r = env
            .links
            .call(&to, Some(job.id), Some(slice_id), &Command::StopEnv(to_id))
            .await;
        step!(judge("stop_env", r));
        step!(
            env.record(
                job,
                "stopped_new",
                STEPS[4],
                "The new container is stopped, as the slice was.".into()
            )
            .await
        );
    }
    // The switch: the slice holds the new place from here on.
    let state = if m.was == "stopped" {
        State::Stopped
    } else {
        State::Running
    };
    let (node_id, to_veid, ip, template) = (
        to.id,
        m.to_veid.unwrap_or(0),
        m.to_ip.clone().unwrap_or_default(),
        m.template.clone(),
    );
    let message = format!(
        "{} on node {} at {ip}{}.",
        if m.kind == "reinstall" {
            format!("Reinstalled from {template}")
        } else {
            "Moved".to_string()
        },
        to.name,
        if m.keep_home { ", with its /home" } else { "" }
    );
    let (kind, keep_home) = (m.kind.clone(), m.keep_home);
    step!(
        env.db(move |db| db.write(|tx| {
            slices::take_place(tx, slice_id, (node_id, to_veid, &ip), &template)?;
            moves::set_switched(tx, slice_id)?;
            crate::records::exports::forget(tx, slice_id)?;
            // Snapshots are of the old container's disk: they go with it.
            crate::records::snapshots::forget(tx, slice_id)?;
            slices::set_state(tx, slice_id, state, STEPS[5], &message)?;
            slices::mail_owner(
                tx,
                slice_id,
                crate::mail::Kind::SliceMoved,
                serde_json::json!({ "kind": kind, "keep_home": keep_home }),
            )
        }))
        .await
    );
    Outcome::Done
}

/// After the switch: the gateway points at the new address, the old container goes.
async fn finish(env: &JobEnv, job: &Job, m: &Move) -> Outcome {
    let slice_id = m.slice_id;
    if !job.done("gateway") {
        let (slice, _) = step!(env.slice_and_node(slice_id).await);
        let user_id = slice.user_id;
        let username = step!(
            env.read(move |c| crate::ops::accounts::users::by_id(c, user_id))
                .await
        )
        .map(|u| u.username);
        if let Some(name) = username.and_then(|u| crate::domain::Username::parse(&u).ok()) {
            step!(env.gateway_apply(Scope::User(name)).await);
        }
        step!(
            env.record(
                job,
                "gateway",
                STEPS[5],
                "The gateway points at the new address.".into()
            )
            .await
        );
    }
    let from = step!(node(env, m.from_node).await);
    let mut message = String::new();
    match (&from, m.from_veid) {
        (Some(n), Some(v)) if n.enabled && !job.done("removed_old") => {
            let id = step!(veid(Some(v)));
            let r = env
                .links
                .call(n, Some(job.id), Some(slice_id), &Command::DestroyEnv(id))
                .await;
            if !matches!(&r, Ok(reply) if reply.code == crate::slave_link::code::NOT_FOUND) {
                step!(judge("destroy_env", r));
            }
            message = format!("The old container {v} on node {} is removed.", n.name);
        }
        (Some(n), Some(v)) if !n.enabled => {
            message = format!(
                "Node {} is disabled: its old container {v} is left there for staff to remove.",
                n.name
            );
        }
        _ => {}
    }
    step!(
        env.db(move |db| db.write(|tx| {
            moves::remove(tx, slice_id)?;
            slices::set_step(tx, slice_id, "")?;
            if !message.is_empty() {
                slices::event(tx, slice_id, &message)?;
            }
            queue::wake_waiting(tx)
        }))
        .await
    );
    env.room_changed();
    Outcome::Done
}

/// A move that failed for good before the switch: the new container and the archive are
/// removed (as far as their nodes answer), and the slice is as it was, started again if it
/// was stopped for the move.
async fn undo(env: &JobEnv, job: &Job, m: &Move, why: &str) {
    let slice_id = m.slice_id;
    let mut notes = Vec::new();
    if let (Ok(Some(to)), Ok(id)) = (node(env, m.to_node).await, veid(m.to_veid)) {
        let r = env
            .links
            .call(&to, Some(job.id), Some(slice_id), &Command::DestroyEnv(id))
            .await;
        match judge("destroy_env", r) {
            Ok(_) | Err(Outcome::Fail(_)) => {}
            Err(_) => notes.push(format!(
                "the new container {id} on node {} could not be removed now: it is listed as an orphan for staff",
                to.name
            )),
        }
    }
    let from = node(env, m.from_node).await.ok().flatten();
    if let (Some(from), Ok(id)) = (&from, veid(m.from_veid)) {
        if m.sha256.is_some() {
            let _ = env
                .links
                .call(from, Some(job.id), Some(slice_id), &Command::DropExport(id))
                .await;
        }
    }
    // What this run did is in the row's checkpoint, not yet in `job` (read when claimed).
    let job_id = job.id;
    let stopped_old = env
        .read(move |c| queue::get(c, job_id))
        .await
        .ok()
        .flatten()
        .is_some_and(|j| j.done("stopped_old"));
    let restart = m.was == "running" && stopped_old;
    let state = match m.was.as_str() {
        "running" if !restart => State::Running,
        "failed" => State::Failed,
        _ => State::Stopped,
    };
    let what = if m.kind == "reinstall" {
        "The reinstall"
    } else {
        "The move"
    };
    let mut message = format!("{what} failed ({why}); the slice stays as it was");
    if let Some(n) = &from {
        message.push_str(&format!(" on node {}", n.name));
    }
    message.push('.');
    if restart {
        message.push_str(" It was stopped for the move and is started again.");
    }
    for n in &notes {
        message.push_str(&format!(" Note: {n}."));
    }
    let (user_id, node_id) = (job.user_id, m.from_node);
    let was_failed = state == State::Failed;
    let why = why.to_string();
    let _ = env
        .db(move |db| {
            db.write(|tx| {
                moves::remove(tx, slice_id)?;
                if was_failed {
                    slices::fail(tx, slice_id, &why)?;
                    slices::event(tx, slice_id, &message)?;
                } else {
                    slices::set_state(tx, slice_id, state, "", &message)?;
                }
                if restart {
                    queue::enqueue(tx, JobKind::Start, slice_id, user_id, node_id)?;
                }
                queue::wake_waiting(tx)
            })
        })
        .await;
    env.room_changed();
}
