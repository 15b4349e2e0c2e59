//! Compare a node's containers (`list_envs`) with the database and put right what drifted: a
//! slice that should run and was found stopped is started again (or, by `reconcile_policy`,
//! shown stopped); one found running is shown running; one whose container is gone is marked
//! failed as lost (staff may make it again); a container the master does not know is listed
//! for staff as an orphan (they may remove it). Slices with a job in flight are left to that
//! job. Each finding is an event on the slice and an audit line.

use std::collections::HashMap;

use crate::jobs::env::JobEnv;
use crate::jobs::queue::{self, Job};
use crate::jobs::{judge, JobKind, Outcome};
use crate::ops::accounts::{audit, Actor};
use crate::ops::slices::{self, State};
use crate::records::orphans::Seen;
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let node = step!(env.job_node(job).await);
    let Some(node) = node else {
        return Outcome::Done;
    };
    // A slice changed from this second on may have changed after the node answered (made and
    // started by a job that ended meanwhile): it is left to the next round.
    let listed_at = crate::store::now();
    let r = env
        .links
        .call(&node, Some(job.id), None, &Command::ListEnvs)
        .await;
    let reply = step!(judge("list_envs", r));
    // What the node has: container id -> running, stopped, with its address and name.
    let text = |e: &serde_json::Value, k: &str| {
        e.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let seen: HashMap<i64, Seen> = reply
        .returned
        .iter()
        .filter_map(|e| {
            let veid = e.get("id")?.as_i64()?;
            Some((
                veid,
                Seen {
                    veid,
                    state: e.get("state")?.as_str()?.to_string(),
                    ip: text(e, "ip"),
                    hostname: text(e, "hostname"),
                },
            ))
        })
        .collect();
    let (node_id, name, restart) = (node.id, node.name.to_string(), env.cfg.reconcile_restart);
    step!(
        env.db(move |db| db.write(|tx| {
            let ours = crate::records::slices::on_node(tx, node_id)?;
            let drift = |tx: &rusqlite::Transaction, subject: audit::Subject, detail: &str| {
                audit::record(tx, audit::Event::Drift, &Actor::default(), subject, detail)
            };
            for s in &ours {
                if s.updated_at >= listed_at || queue::in_flight(tx, s.id)? {
                    continue;
                }
                let subject = audit::Subject::Slice(s.id);
                let said = |what: &str| format!("ve{} on {name}: {what}", s.veid);
                match (
                    s.state.as_str(),
                    seen.get(&s.veid).map(|e| e.state.as_str()),
                ) {
                    ("running", Some("stopped")) if restart => {
                        slices::event(
                            tx,
                            s.id,
                            &format!("Found stopped on {name}, not by Slices: starting it again."),
                        )?;
                        queue::enqueue(tx, JobKind::Start, s.id, Some(s.user_id), Some(node_id))?;
                        drift(tx, subject, &said("found stopped; started again"))?;
                    }
                    ("running", Some("stopped")) => {
                        slices::set_state(
                            tx,
                            s.id,
                            State::Stopped,
                            "",
                            &format!("Found stopped on {name}, not by Slices."),
                        )?;
                        drift(
                            tx,
                            subject,
                            &said("found stopped; shown stopped (policy: report)"),
                        )?;
                    }
                    ("stopped", Some("running")) => {
                        slices::set_state(
                            tx,
                            s.id,
                            State::Running,
                            "",
                            &format!("Found running on {name}."),
                        )?;
                        drift(tx, subject, &said("found running; shown running"))?;
                    }
                    ("running" | "stopped", None | Some("absent")) => {
                        slices::fail(
                            tx,
                            s.id,
                            &format!(
                                "its container is gone from {name} (lost); staff can make it again"
                            ),
                        )?;
                        drift(tx, subject, &said("container gone; marked failed (lost)"))?;
                    }
                    _ => {}
                }
            }
            // Containers no slice holds: listed for staff (reported when first found) until
            // they are removed.
            // (Both containers of a slice being moved or reinstalled are its own.)
            let mut known: std::collections::HashSet<i64> = ours.iter().map(|s| s.veid).collect();
            known.extend(crate::records::moves::veids_on(tx, node_id)?);
            let orphans: Vec<Seen> = seen
                .values()
                .filter(|e| !known.contains(&e.veid))
                .cloned()
                .collect();
            for veid in crate::records::orphans::found(tx, node_id, &orphans)? {
                drift(
                    tx,
                    audit::Subject::Container { node: &name, veid },
                    "a container no slice holds (an orphan): staff may remove it on the Nodes page",
                )?;
            }
            Ok(())
        }))
        .await
    );
    Outcome::Done
}
