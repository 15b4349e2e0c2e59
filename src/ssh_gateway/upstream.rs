//! The gateway's side towards a slice: one SSH connection to the slice's sshd per student
//! connection, as the owner, with the hop key. The slice's host key is kept at first sight
//! (per slice, in the database) and any other refused.

use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use crate::context::Context;

/// Why a slice could not be reached, in words for the student.
#[derive(Debug)]
pub enum Unreachable {
    /// Nothing answered (stopped, its node down, still starting).
    NoAnswer,
    /// The slice showed a host key other than the one kept.
    HostKeyChanged,
    /// The slice refused the hop key (its keys not given yet).
    Refused,
    /// The master holds no hop key for the user yet.
    NoHopKey,
}

impl Unreachable {
    pub fn line(&self, name: &str, dashboard: &str) -> String {
        match self {
            Unreachable::NoAnswer => format!(
                "slices: your slice {name} does not answer: it is stopped or its node is down. Start it at {dashboard}, or ask the lab staff."
            ),
            Unreachable::HostKeyChanged => format!(
                "slices: your slice {name} shows another SSH host key than before, so the gateway will not log you in. Ask the lab staff."
            ),
            Unreachable::Refused | Unreachable::NoHopKey => format!(
                "slices: your slice {name} is not ready for logins yet (its keys are being set up). Try again in a minute."
            ),
        }
    }
}

pub struct Checker {
    ctx: Arc<Context>,
    slice_id: i64,
    kept: Option<String>,
    /// What the slice showed, when it was not the key kept.
    changed: Arc<std::sync::atomic::AtomicBool>,
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let shown = key_line(key);
        match &self.kept {
            Some(kept) if *kept == shown => Ok(true),
            Some(_) => {
                self.changed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    slice_id = self.slice_id,
                    "ssh gateway: a slice showed another host key; refused"
                );
                Ok(false)
            }
            None => {
                let (ctx, id) = (self.ctx.clone(), self.slice_id);
                let _ = tokio::task::spawn_blocking(move || {
                    ctx.db
                        .write(|tx| crate::records::gateway::pin_host_key(tx, id, &shown))
                })
                .await;
                Ok(true)
            }
        }
    }
}

/// `ALGO BASE64` of a public key (no comment).
fn key_line(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().unwrap_or_default().trim().to_string()
}

pub type Link = russh::client::Handle<Checker>;

/// Connects to the slice at `ip` as `username` with the hop key at `key`.
pub async fn connect(
    ctx: &Arc<Context>,
    target: &crate::records::gateway::LoginTarget,
    ip: &str,
    key: Option<PrivateKey>,
) -> Result<Link, Unreachable> {
    let Some(key) = key else {
        return Err(Unreachable::NoHopKey);
    };
    let config = Arc::new(russh::client::Config {
        // AES-GCM (hardware AES) before ChaCha20: the relay encrypts every byte a second time.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(super::CIPHERS),
            ..Default::default()
        },
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    });
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = Checker {
        ctx: ctx.clone(),
        slice_id: target.slice_id,
        kept: target.host_key.clone(),
        changed: changed.clone(),
    };
    let addr = (ip, 22u16);
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        russh::client::connect(config, addr, checker),
    )
    .await;
    let mut link = match connected {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => {
            tracing::debug!(slice_id = target.slice_id, error = %e, "ssh gateway: slice not reached");
            return Err(if changed.load(std::sync::atomic::Ordering::Relaxed) {
                Unreachable::HostKeyChanged
            } else {
                Unreachable::NoAnswer
            });
        }
        Err(_) => return Err(Unreachable::NoAnswer),
    };
    let auth = tokio::time::timeout(
        Duration::from_secs(10),
        link.authenticate_publickey(
            target.username.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        ),
    )
    .await;
    match auth {
        Ok(Ok(r)) if r.success() => Ok(link),
        Ok(Ok(_)) => Err(Unreachable::Refused),
        _ => Err(Unreachable::NoAnswer),
    }
}
