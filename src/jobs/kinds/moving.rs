//! Move a slice to the node staff chose: made anew there from its template, the old container removed.

use crate::jobs::env::JobEnv;

use crate::domain::VeId;
use crate::jobs::queue::{self, Job};
use crate::jobs::{judge, Outcome};
use crate::ops::slices::State;
use crate::slave_link::Command;

/// A move: remove the old container (unless its node is disabled, i.e. taken out of
/// service), release its address and id, and provision afresh on the wanted node.
pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    if slice.state != State::Provisioning {
        return Outcome::Done; // destroyed or acted on meanwhile
    }
    if !job.done("removed_old") {
        let mut message = "The old container is removed.".to_string();
        if let (Some(node), Some(veid)) = (&node, slice.veid) {
            if node.enabled {
                let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
                let r = env
                    .links
                    .call(node, Some(job.id), Some(slice_id), &Command::DestroyEnv(id))
                    .await;
                step!(judge("destroy_env", r));
            } else {
                message = format!(
                    "Node {} is disabled: its old container {veid} is left there for staff to remove.",
                    node.name
                );
            }
        }
        step!(
            env.record(job, "removed_old", "waiting for a place", message)
                .await
        );
    }
    let user_id = slice.user_id;
    step!(
        env.db(move |db| db.write(|tx| {
            crate::records::slices::unplace(tx, slice_id)?;
            crate::records::exports::forget(tx, slice_id)?;
            crate::jobs::enqueue(
                tx,
                crate::jobs::JobKind::Provision,
                slice_id,
                Some(user_id),
                None,
            )?;
            queue::wake_waiting(tx)?;
            Ok(())
        }))
        .await
    );
    env.room_changed();
    Outcome::Done
}
