//! Give back what a provision that failed for good took on its node: its container (if it
//! was made), then its address and container id, so that nothing is left behind and a retry
//! places it afresh. A node that does not answer keeps the job waiting (the mark that there is
//! something to clean up there); a slice taken up again meanwhile (staff retried) is left to
//! its new provision.

use crate::domain::VeId;
use crate::jobs::env::JobEnv;
use crate::jobs::queue::{self, Job};
use crate::jobs::{judge, JobKind, Outcome};
use crate::ops::slices::{self, State};
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    let (Some(node), Some(veid)) = (node, slice.veid) else {
        return Outcome::Done; // nothing held
    };
    let taken_up = step!(
        env.db(move |db| db.read(|c| {
            Ok(queue::in_flight_kind(c, slice_id)?.is_some_and(|(k, _)| k == JobKind::Provision))
        }))
        .await
    );
    if slice.state != State::Failed || taken_up {
        return Outcome::Done;
    }
    let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
    let r = env
        .links
        .call(
            &node,
            Some(job.id),
            Some(slice_id),
            &Command::DestroyEnv(id),
        )
        .await;
    step!(judge("destroy_env", r));
    let (node_id, name) = (node.id, node.name.to_string());
    step!(
        env.db(move |db| db.write(|tx| {
            if slices::release_place(tx, slice_id, node_id, veid)? {
                slices::event(
                    tx,
                    slice_id,
                    &format!(
                        "What it held on {name} is given back: its container, address and id."
                    ),
                )?;
            }
            Ok(())
        }))
        .await
    );
    Outcome::Done
}
