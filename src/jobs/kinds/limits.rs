//! Put a slice's (new) plan in force on its node, live if it runs.

use crate::jobs::env::JobEnv;

use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::ops::slices::{self};
use crate::slave_link::Command;

/// Puts the slice's plan in force on its node (`set_limits`: live when it runs).
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
            &Command::SetLimits(spec.id, spec.limits),
        )
        .await;
    step!(judge("set_limits", r));
    let l = spec.limits;
    let message = format!(
        "New limits in force: memory {} MB (at most {} MB), {} processes, CPU weight {}.",
        l.memory_mb, l.memory_limit_mb, l.processes, l.cpu_shares
    );
    step!(
        env.db(move |db| db.write(|tx| slices::event(tx, slice_id, &message)))
            .await
    );
    Outcome::Done
}
