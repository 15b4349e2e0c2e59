//! The agent's side of the link: accept mutual-TLS connections and answer one request per
//! line, in turn, each with a time limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::frame::{read_line, FrameError};
use super::protocol::{code, Command, Reply};

/// What answers the commands (the agent). Called off the async threads; may block.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, command: Command) -> Reply;
}

#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub max_line: usize,
    pub command_timeout: Duration,
    /// A connection that has not finished its TLS handshake by then is closed.
    pub handshake_timeout: Duration,
    /// A link that sends no whole request for this long is closed (the master's health
    /// checks keep its own link busy; a closed one is simply opened again).
    pub idle_timeout: Duration,
    /// At most this many connections in their handshake at once (not yet known to be the
    /// master's), and from one address: the rest are closed as soon as they are accepted, so
    /// that a flood of silent or slow connections cannot use up the agent's file descriptors.
    pub max_handshakes: usize,
    pub max_handshakes_per_address: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_line: super::frame::MAX_LINE,
            command_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_handshakes: 256,
            max_handshakes_per_address: 32,
        }
    }
}

/// The connections in their handshake, in all and by address; a slot is given back when its
/// guard drops. An address that completed a handshake in the last day (only the master can:
/// the link is mutual TLS) is not held to the global cap, and has four times the room: a
/// flood from elsewhere cannot lock the master out.
#[derive(Default)]
struct Handshakes {
    by_address: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    trusted: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Instant>>,
}

struct Slot {
    table: Arc<Handshakes>,
    address: std::net::IpAddr,
}

impl Handshakes {
    fn take(self: &Arc<Self>, address: std::net::IpAddr, opts: &ServerOptions) -> Option<Slot> {
        let trusted = self
            .trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(86_400));
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().sum();
        let mine = map.get(&address).copied().unwrap_or(0);
        let refused = if trusted {
            mine >= 4 * opts.max_handshakes_per_address
        } else {
            total >= opts.max_handshakes || mine >= opts.max_handshakes_per_address
        };
        if refused {
            return None;
        }
        *map.entry(address).or_insert(0) += 1;
        Some(Slot {
            table: self.clone(),
            address,
        })
    }
}

impl Handshakes {
    /// An address whose client proved itself (a certificate of our CA).
    fn trust(&self, address: std::net::IpAddr) {
        let mut t = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() > 1024 {
            t.retain(|_, at| at.elapsed() < Duration::from_secs(86_400));
        }
        t.insert(address, Instant::now());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .table
            .by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// Serves for as long as the future is polled: an error accepting a connection (no file
/// descriptor left, say) is logged and waited out, never the end. The connections are this
/// future's own: dropping it (a task aborted) closes them all.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let mut open = tokio::task::JoinSet::new();
    let handshakes = Arc::new(Handshakes::default());
    let mut refused = 0u64;
    let mut last_said = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap the connections that ended.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, open = open.len(), "cannot accept a connection; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = handshakes.take(peer.ip(), &opts) else {
            // Too many not yet known: this one is closed at once (said once a minute).
            refused += 1;
            if last_said.elapsed() >= Duration::from_secs(60) {
                tracing::warn!(%peer, refused, "too many connections in their handshake; closing new ones");
                last_said = Instant::now();
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let table = handshakes.clone();
        open.spawn(async move {
            let handshake =
                tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await;
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    table.trust(peer.ip());
                    let who = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned())
                        .map(|c| describe(&c))
                        .unwrap_or_default();
                    tracing::info!(%peer, client = %who, "link opened");
                    if let Err(e) = connection(stream, peer, handler, opts).await {
                        tracing::info!(%peer, error = %e, "link closed");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "refused a connection at the TLS handshake")
                }
                Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

fn describe(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(cert.as_ref());
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
) -> Result<(), FrameError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        let read = tokio::time::timeout(
            opts.idle_timeout,
            read_line(&mut stream, &mut line, opts.max_line),
        )
        .await;
        let Ok(read) = read else {
            tracing::info!(%peer, secs = opts.idle_timeout.as_secs(), "link idle; closing it");
            return Ok(());
        };
        match read {
            Ok(Some(())) => {}
            Ok(None) => return Ok(()),
            Err(FrameError::TooLarge(max)) => {
                tracing::warn!(%peer, max, "request too large; closing the link");
                let reply = Reply::error(
                    code::TOO_LARGE,
                    format!("a request is at most {max} bytes; closing"),
                );
                write_reply(stream.get_mut(), &reply).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let started = Instant::now();
        let head = match Command::parse_head(&line) {
            Ok(h) => h,
            Err(refusal) => {
                // Raw bytes of a size it cannot tell follow: the stream is lost.
                tracing::warn!(%peer, error = %refusal, "a request announced raw bytes it cannot size; closing the link");
                write_reply(stream.get_mut(), &Reply::from(refusal)).await?;
                return Ok(());
            }
        };
        let mut parsed = head.command;
        if head.tail > 0 {
            let mut raw = vec![0u8; head.tail];
            let read = tokio::time::timeout(opts.idle_timeout, stream.read_exact(&mut raw)).await;
            match read {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    tracing::info!(%peer, "link stopped in the middle of a piece; closing it");
                    return Ok(());
                }
            }
            if let Ok(Command::ImportHome { data, .. }) = &mut parsed {
                *data = raw;
            }
        }
        let (name, args, reply) = match parsed {
            Err(refusal) => (
                "(refused)",
                String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
                Reply::from(refusal),
            ),
            Ok(Command::Ping) => ("ping", String::new(), pong()),
            Ok(cmd) => {
                let name = cmd.name();
                let args = cmd.describe();
                let h = handler.clone();
                let work = tokio::task::spawn_blocking(move || h.handle(cmd));
                let reply = match tokio::time::timeout(opts.command_timeout, work).await {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(e)) => Reply::error(code::FAILED, format!("the command crashed: {e}")),
                    Err(_) => Reply::error(
                        code::TIMEOUT,
                        format!(
                            "{name} did not finish within {} s",
                            opts.command_timeout.as_secs()
                        ),
                    ),
                };
                (name, args, reply)
            }
        };
        let micros = started.elapsed().as_micros() as u64;
        if name == "ping" {
            tracing::debug!(%peer, command = name, code = reply.code, micros, "command");
        } else {
            tracing::info!(%peer, command = name, arguments = %args, code = reply.code, returned = %reply.summary(), micros, "command");
        }
        write_reply(stream.get_mut(), &reply).await?;
    }
}

/// Writes a reply (its line, and its raw bytes if any) and flushes.
async fn write_reply<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(&reply.to_wire()).await?;
    w.flush().await
}

/// The answer to `ping`: the agent's version.
pub fn pong() -> Reply {
    Reply::ok(vec!["pong".into(), env!("CARGO_PKG_VERSION").into()])
}
