//! One file per kind of job; `execute` is the registry that runs a job's row by its kind.

mod destroy;
mod directory;
mod export;
mod gateway;
mod keys;
mod limits;
mod moving;
mod node_health;
mod power;
mod provision;
mod reconcile;
mod release;
mod remove_orphans;
mod snapshots;
mod template_sync;
mod term;
mod usage;

use super::env::JobEnv;
use super::queue::Job;
use super::Outcome;

pub async fn execute(env: &JobEnv, job: &Job) -> Outcome {
    use crate::jobs::JobKind::*;
    match job.kind() {
        Some(Provision) => provision::run(env, job).await,
        Some(Start) => power::run(env, job, "start").await,
        Some(Stop) => power::run(env, job, "stop").await,
        Some(Restart) => power::run(env, job, "restart").await,
        Some(Destroy) => destroy::run(env, job).await,
        Some(NodeHealth) => node_health::run(env, job).await,
        Some(TemplateSync) => template_sync::run(env, job).await,
        Some(Gateway) => gateway::run(env, job).await,
        Some(Keys) => keys::run(env, job).await,
        Some(Move) => moving::run(env, job).await,
        Some(Usage) => usage::run(env, job).await,
        Some(Limits) => limits::run(env, job).await,
        Some(Reconcile) => reconcile::run(env, job).await,
        Some(Release) => release::run(env, job).await,
        Some(RemoveOrphans) => remove_orphans::run(env, job).await,
        Some(Term) => term::run(env, job).await,
        Some(Export) => export::run(env, job).await,
        Some(Snapshots) => snapshots::run(env, job).await,
        Some(Directory) => directory::run(env, job).await,
        None => Outcome::Fail(format!("unknown job kind `{}`", job.kind)),
    }
}
