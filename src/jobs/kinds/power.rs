//! Start, stop and restart a slice on its node.

use crate::jobs::env::JobEnv;

use crate::domain::VeId;
use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::ops::slices::{self, State};
use crate::slave_link::Command;

pub async fn run(env: &JobEnv, job: &Job, what: &'static str) -> Outcome {
    let Some(slice_id) = job.slice_id else {
        return Outcome::Fail("no slice".into());
    };
    let (slice, node) = step!(env.slice_and_node(slice_id).await);
    let (Some(node), Some(veid)) = (node, slice.veid) else {
        return Outcome::Fail("the slice is not on a node".into());
    };
    if matches!(slice.state, State::Destroying | State::Destroyed) {
        return Outcome::Done;
    }
    let id = step!(VeId::new(veid as u64).map_err(|e| Outcome::Fail(e.message)));
    let (cmd, state, message) = match what {
        "start" => (Command::StartEnv(id), State::Running, "Started."),
        "stop" => (Command::StopEnv(id), State::Stopped, "Stopped."),
        _ => (Command::RestartEnv(id), State::Running, "Restarted."),
    };
    let r = env
        .links
        .call(&node, Some(job.id), Some(slice_id), &cmd)
        .await;
    step!(judge(cmd.name(), r));
    step!(
        env.db(move |db| db.write(|tx| {
            slices::set_state(tx, slice_id, state, "", message)?;
            // At its end the term check already said why it stops (one mail, not two).
            let ended = state == State::Stopped && crate::ops::term::stopped_at_end(tx, &slice)?;
            if state == State::Stopped && !ended {
                slices::mail_owner(
                    tx,
                    slice_id,
                    crate::mail::Kind::SliceStopped,
                    serde_json::json!({}),
                )?;
            }
            Ok(())
        }))
        .await
    );
    Outcome::Done
}
