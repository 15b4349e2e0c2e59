//! Sample what a node's slices use, keep it, and alert on a risen failcnt.

use crate::jobs::env::JobEnv;
use serde_json::Value;

use crate::jobs::queue::Job;
use crate::jobs::{judge, Outcome};
use crate::slave_link::Command;
use crate::store::now;

/// Samples what a node's running slices use; a risen failcnt is an alert (audit row; one
/// mail a day to the owner). Old samples are dropped.
pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let node = step!(env.job_node(job).await);
    let Some(node) = node else {
        return Outcome::Done;
    };
    let r = env
        .links
        .call(&node, Some(job.id), None, &Command::Usage(None))
        .await;
    let reply = step!(judge("usage", r));
    let mut reports = Vec::new();
    for item in reply.returned {
        let id = item.get("id").and_then(Value::as_i64);
        let counters: Option<Vec<crate::agent::driver::Counter>> = item
            .get("counters")
            .and_then(|c| serde_json::from_value(c.clone()).ok());
        if let (Some(id), Some(c)) = (id, counters) {
            reports.push((id, c));
        }
    }
    let (node_id, keep) = (node.id, env.cfg.usage_keep_secs);
    step!(
        env.db(move |db| db.write(|tx| {
            let t = now();
            let day = crate::mail::day_of(t);
            for (veid, counters) in &reports {
                let slice = crate::records::slices::running_on(tx, node_id, *veid)?;
                let Some(slice) = slice else { continue };
                for (resource, hits) in crate::ops::usage::record(tx, slice, t, counters)? {
                    crate::ops::usage::alert(tx, slice, &resource, hits, &day)?;
                }
            }
            crate::ops::usage::prune(tx, t - keep)?;
            Ok(())
        }))
        .await
    );
    Outcome::Done
}
