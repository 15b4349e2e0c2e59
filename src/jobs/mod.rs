//! The job loop: durable workflows that take an approved request to a running slice, and
//! back. Jobs are rows (`queue.rs`); the runner (`runner.rs`) claims them with a lease, runs
//! several at once (bounded overall and per node), and retries with back-off. Each step with
//! an effect is recorded in the job's checkpoint in the same transaction as the effect's
//! record, and every agent command is idempotent, so a master killed at any moment resumes
//! where it was and never does a step twice.

/// `step!(result)`: the value, or return the `Outcome` the step ended with.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(o) => return o,
        }
    };
}

pub mod env;
mod kinds;
pub mod links;
mod outbox;
/// The `jobs` table, under the name the job code knows.
pub use crate::records::jobs as queue;
pub use crate::records::jobs::{enqueue, enqueue_for_node, enqueue_gateway, JobKind};
pub mod runner;
mod schedule;

use crate::error::Error;
use crate::slave_link::{code, LinkError, Reply};

pub use env::JobEnv;
pub use kinds::execute;
pub use links::Links;
pub use runner::{JobRunner, RunnerConfig};

/// How a run of a job ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Done, and the job already recorded as succeeded in the transaction of its last step
    /// ([`queue::succeed_if_ours`]): nothing is left to write.
    Finished,
    /// A passing trouble (an agent down, a timeout): try again later.
    Retry(String),
    /// Trying again cannot help (a bad argument, an unknown template).
    Fail(String),
    /// Not a failure: wait this many seconds (no node has room yet).
    Wait(String, i64),
    /// Cancelled meanwhile, or no longer ours: leave it.
    Abandoned,
}

/// How often a job waiting for a node that does not answer looks again.
const NODE_DOWN_WAIT_SECS: i64 = 5;

/// Judges an agent's answer: success, a permanent refusal, a passing failure, or a node that
/// does not answer (wait).
fn judge(
    what: &str,
    r: std::result::Result<Reply, LinkError>,
) -> std::result::Result<Reply, Outcome> {
    match r {
        Ok(r) if r.code == code::OK => Ok(r),
        Ok(r)
            if [
                code::BAD_ARGUMENTS,
                code::CONFLICT,
                code::NO_TEMPLATE,
                code::NOT_FOUND,
                code::UNKNOWN_COMMAND,
            ]
            .contains(&r.code) =>
        {
            Err(Outcome::Fail(format!("{what}: {}", r.text())))
        }
        Ok(r) => Err(Outcome::Retry(format!("{what}: {}", r.text()))),
        // The node does not answer at all (down, rebooting): waiting for it is not failing,
        // however long it takes; the job goes on when it answers again.
        Err(e @ LinkError::Connect { .. }) => Err(Outcome::Wait(
            format!("{} ({what}: {e})", crate::records::jobs::NODE_DOWN),
            NODE_DOWN_WAIT_SECS,
        )),
        Err(e) => Err(Outcome::Retry(format!("{what}: {e}"))),
    }
}

fn db_err(e: Error) -> Outcome {
    Outcome::Retry(format!("database: {e}"))
}
