//! Destroy a slice: its container on the node, its gateway login, its address and id.

use crate::jobs::env::JobEnv;

use crate::domain::VeId;
use crate::jobs::queue::{self, Job};
use crate::jobs::Outcome;
use crate::ops::slices::{self, State};
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    if slice.state == State::Destroyed {
        return Outcome::Done;
    }
    if let (Some(node), Some(veid)) = (&node, slice.veid) {
        if !job.done("removed") {
            let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
            let removed = "Container removed.".to_string();
            step!(
                env.call_step(
                    job,
                    node,
                    &Command::DestroyEnv(id),
                    "removed",
                    "releasing",
                    removed
                )
                .await
            );
        }
    }
    // Release the address and id, and let waiting requests try again.
    step!(
        env.db(move |db| db.write(|tx| {
            crate::records::slices::set_destroyed(tx, slice_id)?;
            // Its archive went with its container.
            crate::records::exports::forget(tx, slice_id)?;
            crate::records::snapshots::forget(tx, slice_id)?;
            slices::event(tx, slice_id, "Destroyed; its address is free again.")?;
            slices::mail_owner(
                tx,
                slice_id,
                crate::mail::Kind::SliceDestroyed,
                serde_json::json!({}),
            )?;
            queue::wake_waiting(tx)?;
            // Its login and web address go from the gateway.
            crate::gateway::queue_user(tx, slice.user_id)?;
            Ok(())
        }))
        .await
    );
    env.room_changed();
    Outcome::Done
}
