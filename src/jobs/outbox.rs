//! The outbox's delivery loop, beside the job loop: each tick it sends what is due (retrying
//! with back-off), and once a day it queues the staff digests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::context::Context;

/// Delivers the outbox: each tick, what is due.
pub struct MailSender {
    digest_hour: u32,
    transport: crate::mail::Transport,
    site: crate::mail::Site,
    from: lettre::message::Mailbox,
    retry_base_secs: i64,
}

impl MailSender {
    pub fn from_context(ctx: &Context) -> anyhow::Result<MailSender> {
        let c = &ctx.config;
        Ok(MailSender {
            digest_hour: c.digest_hour,
            transport: crate::mail::Transport::from_config(c)?,
            site: ctx.site(),
            from: c.mail_from.parse().map_err(|e| {
                anyhow::anyhow!("mail_from `{}` is not an address: {e}", c.mail_from)
            })?,
            retry_base_secs: c.mail_retry_base_secs as i64,
        })
    }

    /// Sends what is due now; how many went.
    pub async fn send_now(&self, db: &crate::store::Db) -> usize {
        crate::mail::send_due(
            db,
            &self.transport,
            &self.site,
            &self.from,
            self.retry_base_secs,
            20,
        )
        .await
    }

    pub(super) async fn run(
        self: Arc<Self>,
        db: crate::store::Db,
        tick: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let _ = db
            .run(|db| db.write(|tx| crate::mail::requeue_sending(tx)))
            .await;
        let mut every = tokio::time::interval(tick.max(Duration::from_millis(200)));
        let mut digest_checked = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = every.tick() => {
                    let now = time::OffsetDateTime::now_utc();
                    if u32::from(now.hour()) >= self.digest_hour && digest_checked.elapsed() >= Duration::from_secs(60) {
                        digest_checked = std::time::Instant::now();
                        let day = crate::mail::day_of(now.unix_timestamp());
                        if let Ok(Err(e)) = db.run(move |db| Ok::<_, crate::error::Error>(db.write(|tx| crate::mail::queue_digests(tx, &day)))).await {
                            tracing::error!(error = %e, "queueing the daily digests");
                        }
                    }
                    while self.send_now(&db).await > 0 {}
                }
            }
        }
    }
}
