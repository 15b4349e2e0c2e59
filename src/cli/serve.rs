//! `slices serve`: the master, its web interface, job loop and housekeeping.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::context::Context;
use crate::ops::accounts::{self};
use crate::web::Application;

/// Holds the data folder for this process: two masters on one database would run each
/// other's jobs.
fn lock_data_folder(data: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("cannot create the data folder {}", data.display()))?;
    let path = data.join("master.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another slices master is running on {} (it holds {}); stop it first",
            data.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Runs the master until Ctrl-C or SIGTERM: the web interface and the job loop.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Before the database is opened (and migrated): a second master, of any version, never
    // touches the live one.
    let _lock = lock_data_folder(&config.data)?;
    if crate::clock::offset() != 0 {
        tracing::warn!(
            offset_secs = crate::clock::offset(),
            "the test clock is set ({}): this master's time is not the real time",
            crate::clock::TEST_OFFSET_ENV
        );
    }
    let ctx = Context::open(config)?;
    let embedded = crate::embedded::start(&ctx).await?;
    let app = Application::build(ctx.clone())?;
    let ssh = crate::ssh_gateway::start(&ctx).await?;
    let runner = crate::jobs::JobRunner::new(
        ctx.clone(),
        crate::jobs::RunnerConfig::from_config(&ctx.config)?,
    )?;
    let (stop_jobs, stopped) = tokio::sync::watch::channel(false);
    let jobs = tokio::spawn(runner.clone().run(stopped));
    let base = app.base_url().to_string();
    tracing::info!(url = %base, data = %ctx.config.data.display(), ms = started.elapsed().as_millis() as u64, "slices is ready");
    println!(
        "Slices is running at {base}/  (data in {})",
        ctx.config.data.display()
    );
    if embedded.is_some() {
        println!(
            "A built-in {} node `local` runs the slices (embedded_agent = \"{}\"; set it to \"off\" once real nodes are enrolled).",
            if ctx.config.embedded_agent == "sim" { "simulated" } else { "LXC" },
            ctx.config.embedded_agent
        );
    }
    if let Some(ssh) = &ssh {
        println!(
            "Students log in to their slices with: ssh -p {} NAME@{}  (the built-in SSH gateway, on {})",
            ctx.site().gateway_port,
            ctx.config.gateway_host,
            ssh.addr
        );
    }
    announce_first_admin(&ctx, &base).await?;
    spawn_housekeeping(ctx.clone());
    app.run_until_stopped().await?;
    let _ = stop_jobs.send(true);
    let _ = jobs.await;
    if let Some(ssh) = ssh {
        ssh.stop().await;
    }
    tracing::info!("slices stopped");
    Ok(())
}

async fn announce_first_admin(ctx: &Arc<Context>, base: &str) -> anyhow::Result<()> {
    let c = ctx.clone();
    let token = tokio::task::spawn_blocking(move || accounts::first_admin_invite(&c.db))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(token) = token {
        println!(
            "\nThere is no admin account yet. Open this one-time link to create it (valid 7 days):\n\n    {base}/setup/{token}\n\n\
             (or run: slices user add NAME --role admin --email ADDRESS)\n"
        );
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// Periodic clean-up: expired sessions.
fn spawn_housekeeping(ctx: Arc<Context>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let c = ctx.clone();
            let result = tokio::task::spawn_blocking(move || {
                c.db.write(|tx| accounts::sessions::purge_expired(tx, c.policy.life))
            })
            .await;
            match result {
                Ok(Ok(n)) if n > 0 => tracing::info!(sessions = n, "purged expired sessions"),
                Ok(Err(e)) => tracing::warn!(error = %e, "purging sessions"),
                _ => {}
            }
        }
    });
}
