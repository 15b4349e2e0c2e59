//! Does on the node what was asked of a slice's snapshots (take, restore, delete: each row
//! in the order asked), then reads the node's list back and puts the rows right: one the node
//! no longer has goes, one it has that no row names is shown ("found on the node").

use crate::domain::{SnapshotName, VeId};
use crate::jobs::env::JobEnv;
use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::ops::slices::{self, State};
use crate::records::snapshots::{self as rows, Snapshot};
use crate::slave_link::{code, Command};

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    let (Some(node), Some(veid)) = (node, slice.veid) else {
        return Outcome::Done; // destroyed or moved meanwhile: its snapshots went with it
    };
    if !matches!(slice.state, State::Running | State::Stopped) {
        return Outcome::Done;
    }
    let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
    let asked = step!(env.read(move |c| rows::of_slice(c, slice_id)).await);
    for s in asked
        .into_iter()
        .filter(|s| matches!(s.state.as_str(), "taking" | "restoring" | "deleting"))
    {
        let Ok(name) = SnapshotName::parse(&s.name) else {
            continue;
        };
        let cmd = match s.state.as_str() {
            "taking" => Command::Snapshot(id, name.clone()),
            "restoring" => Command::RestoreSnapshot(id, name.clone()),
            _ => Command::DropSnapshot(id, name.clone()),
        };
        let r = env
            .links
            .call(&node, Some(job.id), Some(slice_id), &cmd)
            .await;
        let (state, n) = (s.state.clone(), s.name.clone());
        let last = env.last_attempt(job);
        let outcome = match r {
            // Taken already (an answer lost): the list below fills it in.
            Ok(reply) if state == "taking" && reply.code == code::CONFLICT => Ok(None),
            // The host's tool failed: trying again does the same.
            Ok(reply) if reply.code == code::FAILED => {
                Err(format!("{}: {}", cmd.name(), reply.text()))
            }
            r => match judge(cmd.name(), r) {
                Ok(reply) => Ok(Some(reply)),
                Err(Outcome::Fail(why)) => Err(why),
                Err(Outcome::Retry(why)) if last => Err(why),
                Err(o) => return o,
            },
        };
        step!(
            env.db(move |db| db.write(|tx| {
                match (state.as_str(), outcome) {
                    ("taking", Ok(reply)) => {
                        if let Some(made) = reply.as_ref().and_then(|r| r.returned.get(1)) {
                            let size = made["size"].as_i64().unwrap_or(0);
                            let at = made["created"].as_i64().unwrap_or_else(crate::clock::now);
                            rows::seen(tx, slice_id, &n, size, at)?;
                            slices::event(
                                tx,
                                slice_id,
                                &format!(
                                    "Snapshot {n} taken ({}).",
                                    crate::domain::size_text(size)
                                ),
                            )?;
                        }
                    }
                    ("taking", Err(why)) => {
                        rows::set_state(tx, slice_id, &n, "failed", &why)?;
                        slices::event(
                            tx,
                            slice_id,
                            &format!("Snapshot {n} could not be taken: {why}"),
                        )?;
                    }
                    ("restoring", Ok(_)) => {
                        rows::set_state(tx, slice_id, &n, "ready", "")?;
                        slices::event(
                            tx,
                            slice_id,
                            &format!("Its disk is back as snapshot {n} had it."),
                        )?;
                    }
                    ("restoring", Err(why)) => {
                        rows::set_state(tx, slice_id, &n, "ready", "")?;
                        slices::event(
                            tx,
                            slice_id,
                            &format!("Restoring snapshot {n} failed: {why}"),
                        )?;
                    }
                    (_, Ok(_)) => {
                        rows::remove(tx, slice_id, &n)?;
                        slices::event(tx, slice_id, &format!("Snapshot {n} deleted."))?;
                    }
                    (_, Err(why)) => {
                        rows::set_state(tx, slice_id, &n, "ready", "")?;
                        slices::event(
                            tx,
                            slice_id,
                            &format!("Snapshot {n} could not be deleted: {why}"),
                        )?;
                    }
                }
                Ok(())
            }))
            .await
        );
    }
    // What the node has, read back.
    let r = env
        .links
        .call(
            &node,
            Some(job.id),
            Some(slice_id),
            &Command::ListSnapshots(id),
        )
        .await;
    let reply = step!(judge("list_snapshots", r));
    let on_node: Vec<(String, i64, i64)> = reply
        .returned
        .iter()
        .filter_map(|s| {
            let name = SnapshotName::parse(s["name"].as_str()?).ok()?;
            Some((
                name.as_str().to_string(),
                s["size"].as_i64().unwrap_or(0),
                s["created"].as_i64().unwrap_or(0),
            ))
        })
        .collect();
    step!(
        env.db(move |db| db.write(|tx| {
            let rows_now = rows::of_slice(tx, slice_id)?;
            for (name, size, at) in &on_node {
                match rows_now.iter().find(|r| &r.name == name) {
                    Some(_) => rows::seen(tx, slice_id, name, *size, *at)?,
                    None => {
                        rows::insert(
                            tx,
                            &Snapshot {
                                slice_id,
                                name: name.clone(),
                                note: "found on the node".into(),
                                state: "ready".into(),
                                size: Some(*size),
                                taken_at: Some(*at),
                                asked_by: None,
                                asked_at: *at,
                                error: String::new(),
                            },
                        )?;
                        slices::event(
                            tx,
                            slice_id,
                            &format!("Snapshot {name} found on the node."),
                        )?;
                    }
                }
            }
            for r in rows_now {
                let there = on_node.iter().any(|(n, _, _)| *n == r.name);
                if !there && r.state == "ready" {
                    rows::remove(tx, slice_id, &r.name)?;
                    slices::event(
                        tx,
                        slice_id,
                        &format!("Snapshot {} is no longer on the node.", r.name),
                    )?;
                }
            }
            Ok(())
        }))
        .await
    );
    Outcome::Done
}
