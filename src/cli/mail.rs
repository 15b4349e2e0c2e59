//! `slices mail test`: one message now, through the configured transport.

use anyhow::bail;
use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;

#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// Send a test message to ADDRESS through the configured transport, now.
    Test {
        address: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub async fn run(what: MailCommand) -> anyhow::Result<()> {
    let MailCommand::Test { address, cfg } = what;
    let email =
        crate::domain::Email::parse(&address).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let ctx = Context::open_existing(cfg.load(&[])?)?;
    let sender = crate::jobs::runner::MailSender::from_context(&ctx)?;
    let id = ctx
        .db
        .write(|tx| {
            crate::mail::enqueue(
                tx,
                crate::mail::Kind::Test,
                email.as_str(),
                "",
                serde_json::json!({}),
                None,
                None,
            )
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sender.send_now(&ctx.db).await;
    let m = ctx
        .db
        .read(|c| crate::mail::get(c, id))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("the test message vanished"))?;
    match m.state.as_str() {
        "sent" if ctx.config.mail_transport == "file" => {
            println!(
                "Sent: written to {}",
                ctx.config
                    .data
                    .join("mail")
                    .join(format!("{id}.eml"))
                    .display()
            );
            Ok(())
        }
        "sent" => {
            println!(
                "Sent to {} through {}:{}.",
                email, ctx.config.smtp_host, ctx.config.smtp_port
            );
            Ok(())
        }
        "failed" => bail!("not sent, for good: {}", m.last_error),
        _ => bail!(
            "not sent yet: {}\nA running master keeps trying; see the outbox in the staff pages.",
            m.last_error
        ),
    }
}
