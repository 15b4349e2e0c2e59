//! Make the gateway match the database, for one user or all.

use crate::jobs::env::JobEnv;

use crate::domain::Username;
use crate::gateway::Scope;
use crate::jobs::queue::Job;
use crate::jobs::Outcome;

pub async fn run(env: &JobEnv, job: &Job) -> Outcome {
    let scope = match job.user_id {
        None => Scope::All,
        Some(id) => {
            let user = step!(
                env.read(move |c| crate::ops::accounts::users::by_id(c, id))
                    .await
            );
            match user.map(|u| Username::parse(&u.username)) {
                Some(Ok(u)) => Scope::User(u),
                _ => return Outcome::Fail("no such user".into()),
            }
        }
    };
    let report = step!(env.gateway_apply(scope).await);
    if !report.plan.is_empty() {
        tracing::info!(scope = %report.scope, changes = report.plan.changes.len(), ms = report.duration_ms, "gateway applied");
    }
    Outcome::Done
}
