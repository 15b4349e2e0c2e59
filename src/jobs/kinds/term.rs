//! The term check: moves slices through the stages of their end (`ops::term::pass`), in
//! batches of one transaction each, at the clock's time now.

use crate::jobs::env::JobEnv;
use crate::jobs::queue::Job;
use crate::jobs::Outcome;
use crate::store::now;

pub async fn run(env: &JobEnv, _job: &Job) -> Outcome {
    let grace = env.cfg.term_grace_secs;
    loop {
        let (done, more) = step!(
            env.db(move |db| db.write(|tx| crate::ops::term::pass(tx, now(), grace)))
                .await
        );
        if done != Default::default() {
            tracing::info!(
                warned = done.warned,
                stopped = done.stopped,
                destroyed = done.destroyed,
                reset = done.reset,
                "term check"
            );
        }
        if done.stopped + done.destroyed > 0 {
            env.room_changed();
        }
        // A batch that could do nothing (slices still being made) is not tried again now.
        if !more || done == Default::default() {
            return Outcome::Done;
        }
    }
}
