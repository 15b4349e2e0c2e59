//! Bring a node's OS templates in step with the master's folder.

use crate::jobs::env::JobEnv;

use crate::jobs::queue::Job;
use crate::jobs::Outcome;
use crate::nodes::{self};

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let node = step!(env.job_node(job).await);
    let Some(node) = node else {
        return Outcome::Done;
    };
    let mut link = match env.links.connect(&node).await {
        Ok(l) => l,
        Err(e) => return Outcome::Retry(format!("template sync: {e}")),
    };
    match nodes::sync_templates(&mut link, env.templates.clone()).await {
        Ok(done) => {
            let sent: Vec<String> = done
                .iter()
                .filter(|s| s.outcome == "installed")
                .map(|s| s.name.clone())
                .collect();
            if !sent.is_empty() {
                tracing::info!(node = %node.name, templates = ?sent, "templates sent");
            }
            Outcome::Done
        }
        Err(e) => Outcome::Retry(format!("template sync: {e}")),
    }
}
