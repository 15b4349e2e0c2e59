//! Delivering the outbox: SMTP (STARTTLS, implicit TLS or plain, with optional login) through
//! lettre, or `.eml` files under the data folder.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{render, Kind, Message, Rendered, Site};
use crate::store::Db;

/// How messages leave.
pub enum Transport {
    /// Each message becomes `DIR/ID.eml` (the embedded default).
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Trying again will not help (a refused address, a message that cannot be built).
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn permanent(m: impl Into<String>) -> SendError {
        SendError {
            permanent: true,
            message: m.into(),
        }
    }
}

impl Transport {
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<Transport> {
        match c.mail_transport.as_str() {
            "file" => Ok(Transport::File(c.data.join("mail"))),
            "smtp" => {
                anyhow::ensure!(
                    !c.smtp_host.is_empty(),
                    "mail_transport = \"smtp\" needs smtp_host"
                );
                let tls = match c.smtp_tls.as_str() {
                    "starttls" => Tls::Required(TlsParameters::new(c.smtp_host.clone())?),
                    "tls" => Tls::Wrapper(TlsParameters::new(c.smtp_host.clone())?),
                    "none" => Tls::None,
                    other => anyhow::bail!("smtp_tls is starttls, tls or none, not `{other}`"),
                };
                let mut b =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.smtp_host.clone())
                        .port(c.smtp_port)
                        .tls(tls)
                        .timeout(Some(std::time::Duration::from_secs(30)));
                if !c.smtp_username.is_empty() {
                    b = b.credentials(Credentials::new(
                        c.smtp_username.clone(),
                        c.smtp_password.0.clone(),
                    ));
                }
                Ok(Transport::Smtp(b.build()))
            }
            other => anyhow::bail!("mail_transport is file or smtp, not `{other}`"),
        }
    }

    /// Sends one message.
    pub async fn deliver(&self, id: i64, email: lettre::Message) -> Result<(), SendError> {
        match self {
            Transport::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| SendError {
                    permanent: false,
                    message: e.to_string(),
                })?;
                let tmp = dir.join(format!(".{id}.eml.tmp"));
                let path = dir.join(format!("{id}.eml"));
                std::fs::write(&tmp, email.formatted())
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| SendError {
                        permanent: false,
                        message: e.to_string(),
                    })
            }
            Transport::Smtp(t) => t.send(email).await.map(|_| ()).map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: e.to_string(),
            }),
        }
    }
}

/// Quoted-printable: readable in the raw message, safe for any line length.
fn qp(s: &str) -> Body {
    Body::new_with_encoding(s.to_string(), ContentTransferEncoding::QuotedPrintable)
        .unwrap_or_else(|_| Body::new(s.to_string()))
}

/// Builds the lettre message: both parts, a Message-ID that is the same for every attempt.
pub fn build(
    msg: &Message,
    r: &Rendered,
    from: &Mailbox,
    site: &Site,
) -> Result<lettre::Message, SendError> {
    let addr = msg
        .to_addr
        .parse()
        .map_err(|e| SendError::permanent(format!("`{}` is not an address: {e}", msg.to_addr)))?;
    let name = super::one_line(&msg.to_name);
    let to = Mailbox::new((!name.is_empty()).then_some(name), addr);
    let host = site.domain.trim_matches('.');
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(r.subject.clone())
        .message_id(Some(format!(
            "<outbox-{}-{}@{host}>",
            msg.id, msg.created_at
        )))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(qp(&r.text)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(qp(&r.html)),
                ),
        )
        .map_err(|e| SendError::permanent(e.to_string()))
}

/// Sends what is due, at most `limit` messages. A message is marked `sending` (committed)
/// before it goes and `sent` after; one that fails for a passing reason is tried again later,
/// waiting longer each time, and fails for good after ten tries or at once for a permanent
/// reason. Returns how many were sent.
pub async fn send_due(
    db: &Db,
    transport: &Transport,
    site: &Site,
    from: &Mailbox,
    retry_base_secs: i64,
    limit: u32,
) -> usize {
    let claimed = db
        .run(move |db| db.write(|tx| crate::records::outbox::claim_due(tx, limit)))
        .await;
    let claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reading the outbox");
            return 0;
        }
    };
    let mut sent = 0;
    let mut ends = Vec::with_capacity(claimed.len());
    for msg in claimed {
        let result = match Kind::parse(&msg.kind) {
            None => Err(SendError::permanent(format!(
                "unknown message kind {}",
                msg.kind
            ))),
            Some(kind) => match render(kind, &msg.data, site) {
                Err(e) => Err(SendError::permanent(format!("cannot render: {e:?}"))),
                Ok(r) => match build(&msg, &r, from, site) {
                    Err(e) => Err(e),
                    Ok(email) => transport.deliver(msg.id, email).await,
                },
            },
        };
        match &result {
            Ok(()) => {
                sent += 1;
                tracing::info!(message = msg.id, to = %msg.to_addr, kind = %msg.kind, "mail sent");
            }
            Err(e) => {
                tracing::warn!(message = msg.id, to = %msg.to_addr, permanent = e.permanent, error = %e, "mail not sent")
            }
        }
        ends.push((msg.id, msg.attempts + 1, result));
    }
    // How each ended, in one transaction for the batch (a commit per message was a fifth of
    // the writes per new slice). A crash before it leaves the batch `sending`, sent again at
    // the next start: at most one batch may arrive twice, with the same Message-ID.
    let recorded = db
        .run(move |db| {
            db.write(|tx| {
                use crate::records::outbox;
                for (id, attempts, result) in &ends {
                    let wait = if retry_base_secs <= 0 {
                        0
                    } else {
                        (retry_base_secs * (1i64 << (attempts - 1).clamp(0, 10))).min(3600)
                    };
                    match result {
                        Ok(()) => outbox::mark_sent(tx, *id)?,
                        Err(e) if e.permanent || *attempts >= 10 => {
                            outbox::mark_failed(tx, *id, &e.message)?
                        }
                        Err(e) => outbox::mark_retry(tx, *id, &e.message, wait)?,
                    }
                }
                Ok::<_, crate::error::Error>(())
            })
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "recording the outbox's deliveries");
    }
    sent
}

/// After a crash, messages caught mid-send are queued again (they may arrive twice in that
/// rare case; the Message-ID is the same, so mail clients can tell).
pub use crate::records::outbox::requeue_sending;
