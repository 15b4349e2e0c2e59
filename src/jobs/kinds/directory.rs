//! The directory check: every enabled directory account looked up again
//! (`ops::accounts::check_directory_accounts`); one the directory no longer finds is disabled.

use crate::jobs::env::JobEnv;
use crate::jobs::queue::Job;
use crate::jobs::Outcome;

pub async fn run(env: &JobEnv, _job: &Job) -> Outcome {
    let Some(dir) = env.ctx.directory.clone() else {
        return Outcome::Done;
    };
    let checked = step!(
        env.db(move |db| crate::ops::accounts::check_directory_accounts(db, &dir))
            .await
    );
    if !checked.disabled.is_empty() {
        tracing::info!(
            looked_up = checked.looked_up,
            disabled = ?checked.disabled,
            "directory check"
        );
    }
    Outcome::Done
}
