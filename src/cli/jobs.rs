//! `slices jobs`: the durable job queue from the shell.

use anyhow::bail;
use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs, failed first, then the newest.
    List {
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// One job, with every agent command it sent and the answers.
    Show {
        id: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Run a failed or cancelled job again, from its last checkpoint.
    Retry {
        id: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Cancel a job that has not finished.
    Cancel {
        id: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub fn run(what: JobsCommand) -> anyhow::Result<()> {
    use crate::jobs::queue;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match what {
        JobsCommand::List { state, limit, cfg } => {
            use crate::records::jobs::STATES;
            if let Some(s) = &state {
                anyhow::ensure!(
                    STATES.contains(&s.as_str()),
                    "a job state is one of {}",
                    STATES.join(", ")
                );
            }
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let jobs = ctx
                .db
                .read(|c| queue::list(c, state.as_deref(), limit))
                .map_err(e)?;
            if jobs.is_empty() {
                println!("No jobs.");
            }
            for j in jobs {
                println!(
                    "{}\t{}\t{}\tattempt {}/{}\tslice {}\t{}",
                    j.id,
                    j.kind,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    j.slice_id
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    j.last_error
                );
            }
            Ok(())
        }
        JobsCommand::Show { id, cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let (job, log) = ctx
                .db
                .read(|c| {
                    Ok::<_, crate::error::Error>((
                        queue::get(c, id)?,
                        crate::records::agent_log::command_log(c, Some(id), None, 200)?,
                    ))
                })
                .map_err(e)?;
            let job = job.ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
            println!("\nAgent commands (newest first):");
            for l in log {
                println!(
                    "  {}  {}  {} {}  -> {} {}  ({} ms)",
                    crate::clock::format_time(l.at),
                    l.node.unwrap_or_default(),
                    l.command,
                    l.arguments,
                    l.code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "no answer".into()),
                    l.returned,
                    l.duration_ms
                );
            }
            Ok(())
        }
        JobsCommand::Retry { id, cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            if ctx.db.write(|tx| queue::retry_now(tx, id)).map_err(e)? {
                println!("Job {id} is queued again; the running master picks it up.");
                Ok(())
            } else {
                bail!("job {id} is not failed or cancelled")
            }
        }
        JobsCommand::Cancel { id, cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            if ctx.db.write(|tx| queue::cancel(tx, id)).map_err(e)? {
                println!("Job {id} is cancelled.");
                Ok(())
            } else {
                bail!("job {id} has finished already (or does not exist)")
            }
        }
    }
}
