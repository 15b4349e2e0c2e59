//! Ask a node how it is (node_info) and record the answer.

use crate::jobs::env::JobEnv;

use crate::jobs::queue::Job;
use crate::jobs::Outcome;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let node = step!(env.job_node(job).await);
    match node {
        Some(node) => env.check_node(&node, Some(job.id)).await,
        None => Outcome::Done,
    }
}
