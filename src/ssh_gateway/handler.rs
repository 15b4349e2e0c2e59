//! One student connection: who they are (log-in by a registered key for the slice's name),
//! then each session channel passed through to the slice, or answered with one line when the
//! slice cannot be reached.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, Pty, Sig};
use tokio::sync::oneshot;

use super::relay::{self, Counters, Replies};
use super::upstream::{self, Link};
use crate::context::Context;
use crate::records::gateway::LoginTarget;

/// What every connection shares.
pub struct Shared {
    pub(super) ctx: Arc<Context>,
    pub(super) gateway: crate::gateway::Settings,
}

impl Shared {
    pub fn new(ctx: Arc<Context>) -> anyhow::Result<Shared> {
        let gateway = crate::gateway::Settings::from_config(&ctx.config)?;
        Ok(Shared { ctx, gateway })
    }

    /// Where students manage their slices (read when needed: the web port may be chosen late).
    fn dashboard(&self) -> String {
        crate::gateway::printable_url(&self.ctx.base_url())
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Db) -> crate::error::Result<T> + Send + 'static,
    ) -> Option<T> {
        let ctx = self.ctx.clone();
        match tokio::task::spawn_blocking(move || f(&ctx.db)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ssh gateway: the database did not answer");
                None
            }
            Err(_) => None,
        }
    }

    /// The slice `name` leads to when `key` is one its owner registered (None: refused).
    async fn allowed(&self, name: &str, key: &PublicKey) -> Option<LoginTarget> {
        // A login name is a slice name: a DNS label. Anything else is refused unread.
        if name.is_empty()
            || name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return None;
        }
        let name = name.to_string();
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.db(move |db| {
            db.read(|c| {
                let Some(t) = crate::records::gateway::login_target(c, &name)? else {
                    return Ok(None);
                };
                Ok(crate::records::gateway::has_key(c, t.user_id, &fingerprint)?.then_some(t))
            })
        })
        .await
        .flatten()
    }

    fn hop_key(&self, username: &str) -> Option<PrivateKey> {
        super::hop_key(&self.gateway, username)
    }

    /// Records the session in the audit log when it ends (only sessions that logged in).
    pub async fn finish(&self, record: Arc<Mutex<Record>>) {
        let r = {
            let Ok(r) = record.lock() else { return };
            r.clone()
        };
        let (Some(user_id), Some((slice_id, name))) = (r.user_id, r.slice.clone()) else {
            return;
        };
        let ip = r.peer.ip().to_string();
        let detail = format!(
            "ssh to {name} from {ip}: {} s, {} channel{}, {} bytes in, {} bytes out{}",
            r.started.elapsed().as_secs(),
            r.channels,
            if r.channels == 1 { "" } else { "s" },
            r.counters.up.load(Ordering::Relaxed),
            r.counters.down.load(Ordering::Relaxed),
            match &r.refused {
                Some(why) => format!(" ({why})"),
                None => String::new(),
            }
        );
        tracing::info!(user_id, slice_id, %ip, "ssh gateway: {detail}");
        self.db(move |db| {
            db.write(|tx| {
                crate::records::audit::record(
                    tx,
                    crate::records::audit::Event::GatewaySession,
                    &crate::records::audit::Actor {
                        user_id: Some(user_id),
                        ip: &ip,
                    },
                    crate::records::audit::Subject::Slice(slice_id),
                    &detail,
                )
            })
        })
        .await;
    }
}

/// What the audit row of a connection says.
#[derive(Clone)]
pub struct Record {
    peer: SocketAddr,
    started: Instant,
    user_id: Option<i64>,
    slice: Option<(i64, String)>,
    channels: u32,
    counters: Arc<Counters>,
    /// Why the slice was not reached, when it was not.
    refused: Option<String>,
}

/// A channel's way: through to the slice, or one line and an exit status.
enum Way {
    Through {
        slice: Arc<ChannelWriteHalf<russh::client::Msg>>,
        replies: Replies,
    },
    Notice {
        line: String,
        status: u32,
    },
}

pub struct Conn {
    shared: Arc<Shared>,
    record: Arc<Mutex<Record>>,
    target: Option<LoginTarget>,
    /// The connection to the slice, made at the first channel; or why there is none.
    link: Option<Result<Link, String>>,
    channels: HashMap<ChannelId, Way>,
}

impl Conn {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr) -> (Conn, Arc<Mutex<Record>>) {
        let record = Arc::new(Mutex::new(Record {
            peer,
            started: Instant::now(),
            user_id: None,
            slice: None,
            channels: 0,
            counters: Default::default(),
            refused: None,
        }));
        (
            Conn {
                shared,
                record: record.clone(),
                target: None,
                link: None,
                channels: HashMap::new(),
            },
            record,
        )
    }

    async fn link(&mut self) -> Result<&Link, String> {
        if self.link.is_none() {
            let t = self.target.clone().ok_or("not logged in")?;
            let made = match super::not_reachable(&t, &self.shared.dashboard()) {
                Some((line, _)) => Err(line),
                None => {
                    let ip = t.ip.clone().unwrap_or_default();
                    let key = self.shared.hop_key(&t.username);
                    upstream::connect(&self.shared.ctx, &t, &ip, key)
                        .await
                        .map_err(|e| {
                            if let Ok(mut r) = self.record.lock() {
                                r.refused = Some(format!("{e:?}"));
                            }
                            e.line(&t.name, &self.shared.dashboard())
                        })
                }
            };
            self.link = Some(made);
        }
        match self.link.as_ref() {
            Some(Ok(l)) => Ok(l),
            Some(Err(line)) => Err(line.clone()),
            None => Err(String::new()),
        }
    }

    /// Forwards a request to the slice and answers the student with the slice's answer.
    async fn forward<F, Fut>(&mut self, channel: ChannelId, session: &mut Session, send: F)
    where
        F: FnOnce(Arc<ChannelWriteHalf<russh::client::Msg>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), russh::Error>>,
    {
        let ok = match self.channels.get(&channel) {
            Some(Way::Through { slice, replies }) => {
                let (tx, rx) = oneshot::channel();
                if let Ok(mut q) = replies.lock() {
                    q.push_back(tx);
                }
                if send(slice.clone()).await.is_err() {
                    false
                } else {
                    matches!(
                        tokio::time::timeout(Duration::from_secs(15), rx).await,
                        Ok(Ok(true))
                    )
                }
            }
            // A notice channel takes a PTY and the like (and prints its line at the start).
            Some(Way::Notice { .. }) => true,
            None => false,
        };
        let _ = if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        };
    }

    /// A shell, command or subsystem starts: passed through, or the notice printed.
    async fn start(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        send: impl FnOnce(
            Arc<ChannelWriteHalf<russh::client::Msg>>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), russh::Error>> + Send>,
        >,
    ) {
        if let Some(Way::Notice { line, status }) = self.channels.get(&channel) {
            let (line, status) = (format!("{line}\r\n"), *status);
            let _ = session.channel_success(channel);
            let _ = session.extended_data(channel, 1, line.into_bytes());
            let _ = session.exit_status_request(channel, status);
            let _ = session.eof(channel);
            let _ = session.close(channel);
            return;
        }
        self.forward(channel, session, send).await;
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.shared.allowed(user, offer.public_key).await {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        // Checked again now that the client proved it holds the key: a key removed meanwhile
        // no longer opens anything.
        let Some(target) = self.shared.allowed(user, key.public_key).await else {
            return Ok(Auth::reject());
        };
        if let Ok(mut r) = self.record.lock() {
            r.user_id = Some(target.user_id);
            r.slice = Some((target.slice_id, target.name.clone()));
        }
        self.target = Some(target);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        if let Ok(mut r) = self.record.lock() {
            r.channels += 1;
        }
        let counters = self
            .record
            .lock()
            .map(|r| r.counters.clone())
            .unwrap_or_default();
        let way = match self.link().await {
            Err(line) => {
                let status = if line.contains("does not answer") {
                    255
                } else {
                    1
                };
                // Keep the channel (its messages are not read: nothing passes).
                tokio::spawn(async move {
                    let mut c = channel;
                    while c.wait().await.is_some() {}
                });
                Way::Notice { line, status }
            }
            Ok(link) => match link.channel_open_session().await {
                Ok(up) => {
                    let (up_read, up_write) = up.split();
                    let up_write = Arc::new(up_write);
                    let replies: Replies = Arc::new(Mutex::new(VecDeque::new()));
                    tokio::spawn(relay::run(
                        channel.split(),
                        session.handle(),
                        up_read,
                        up_write.clone(),
                        replies.clone(),
                        counters,
                    ));
                    Way::Through {
                        slice: up_write,
                        replies,
                    }
                }
                Err(_) => {
                    reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                    return Ok(());
                }
            },
        };
        self.channels.insert(id, way);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (term, modes) = (term.to_string(), modes.to_vec());
        self.forward(channel, session, |s| async move {
            s.request_pty(
                true, &term, col_width, row_height, pix_width, pix_height, &modes,
            )
            .await
        })
        .await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (k, v) = (variable_name.to_string(), variable_value.to_string());
        self.forward(
            channel,
            session,
            |s| async move { s.set_env(true, k, v).await },
        )
        .await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, session, |s| {
            Box::pin(async move { s.request_shell(true).await })
        })
        .await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = data.to_vec();
        self.start(channel, session, |s| {
            Box::pin(async move { s.exec(true, command).await })
        })
        .await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only sftp: anything else a slice's sshd might offer is not the gateway's to pass.
        if name != "sftp" {
            let _ = session.channel_failure(channel);
            return Ok(());
        }
        self.start(channel, session, |s| {
            Box::pin(async move { s.request_subsystem(true, "sftp").await })
        })
        .await;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Way::Through { slice, .. }) = self.channels.get(&channel) {
            let _ = slice
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Way::Through { slice, .. }) = self.channels.get(&channel) {
            let _ = slice.signal(signal).await;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let _ = session.channel_failure(channel);
        Ok(())
    }
}
