//! Give a slice its current keys (the gateway's hop key for its user).

use crate::jobs::env::JobEnv;

use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::ops::slices::{self};
use crate::slave_link::Command;

/// Gives a slice the keys of its spec (after the user's hop key changed).
pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let Some((slice_id, node, spec)) = step!(env.existing_slice(job).await) else {
        return Outcome::Done;
    };
    let r = env
        .links
        .call(
            &node,
            Some(job.id),
            Some(slice_id),
            &Command::SetKeys(spec.id, spec.keys.clone()),
        )
        .await;
    step!(judge("set_keys", r));
    step!(
        env.db(move |db| db.write(|tx| slices::event(
            tx,
            slice_id,
            "The gateway's key for this slice was renewed."
        )))
        .await
    );
    Outcome::Done
}
