//! Remove, on the job's node, the orphan containers staff asked to remove: each one that no
//! slice holds is destroyed there and no longer listed. Their ids were kept from new slices
//! while they were listed, so the container destroyed is never a slice's.

use crate::domain::VeId;
use crate::jobs::env::JobEnv;
use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::ops::accounts::{audit, Actor};
use crate::records::orphans;
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(node) = step!(env.job_node(job).await) else {
        return Outcome::Done;
    };
    let node_id = node.id;
    // Until none is asked for: staff may ask for more while this runs (each one asked is
    // removed or found held, so this ends).
    loop {
        let asked = step!(
            env.db(move |db| db.read(|c| orphans::asked(c, node_id)))
                .await
        );
        if asked.is_empty() {
            return Outcome::Done;
        }
        for veid in asked {
            step!(remove_one(env, job, &node, veid).await);
        }
    }
}

async fn remove_one(
    env: &JobEnv,
    job: &Job,
    node: &crate::records::nodes::Node,
    veid: i64,
) -> Result<(), Outcome> {
    let node_id = node.id;
    // A slice holds it after all (the reconcile saw it mid-change): not an orphan.
    let held = env
        .db(move |db| {
            db.write(|tx| {
                let held = crate::records::slices::on_node(tx, node_id)?
                    .iter()
                    .any(|s| s.veid == veid);
                if held {
                    orphans::remove(tx, node_id, veid)?;
                }
                Ok(held)
            })
        })
        .await?;
    if held {
        return Ok(());
    }
    if !env.ours(job).await {
        return Err(Outcome::Abandoned);
    }
    let id = VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message))?;
    let r = env
        .links
        .call(node, Some(job.id), None, &Command::DestroyEnv(id))
        .await;
    judge("destroy_env", r)?;
    let name = node.name.to_string();
    env.db(move |db| {
        db.write(|tx| {
            let by = orphans::get(tx, node_id, veid)?.and_then(|o| o.remove_asked_by);
            orphans::remove(tx, node_id, veid)?;
            audit::record(
                tx,
                audit::Event::OrphanRemoved,
                &Actor::default(),
                crate::records::audit::Subject::Container { node: &name, veid },
                &format!("removed, as {} asked", by.as_deref().unwrap_or("staff")),
            )
        })
    })
    .await
}
