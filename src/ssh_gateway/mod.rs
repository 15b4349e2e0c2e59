//! The built-in SSH gateway: students `ssh -p 2222 NAME@gateway` and land in the slice called
//! NAME, with nothing set up on any host (the embedded default).
//!
//! - **Who**: the key a client proves must be one its owner registered on the Keys page, read
//!   from the database at every log-in (a removed key or a disabled account is refused at
//!   once). The login name is the slice's name, unique among live slices; the slice's owner is
//!   the only one whose keys open it.
//! - **Where**: each session channel becomes one session channel to the slice's sshd, opened
//!   as the owner with the per-user hop key the master keeps in its gateway folder (the same
//!   key the Unix-account gateway uses). The slice's host key is kept at first sight and any
//!   other refused until the slice is made anew ([`upstream`]).
//! - **What passes**: shell with PTY and window changes, exec with its exit status, the `sftp`
//!   subsystem (and so scp), signals. Agent, X11 and port forwarding are refused.
//! - **When it cannot**: a simulated, stopped, unplaced or unreachable slice gets one line that
//!   says so, on standard error, and exit status 1 (255 when it does not answer, as ssh says).
//! - Every session is audited when it ends: who, which slice, from where, how long, bytes.

mod handler;
mod relay;
mod upstream;

pub use upstream::Unreachable;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use russh::keys::{HashAlg, PrivateKey};

use crate::context::Context;

/// Ciphers in the order the gateway prefers them (where the other side lets it choose).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// Connections at once, in all and from one address.
const MAX_CONNECTIONS: usize = 1024;
const MAX_PER_ADDRESS: usize = 64;

/// The host key file in the data folder (OpenSSH format, 0600), made once.
pub fn host_key_path(data: &Path) -> PathBuf {
    data.join("gateway").join("ssh_host_ed25519_key")
}

/// Reads the host key, making it first if there is none.
pub fn host_key(data: &Path) -> anyhow::Result<PrivateKey> {
    let path = host_key_path(data);
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.trim())
            .with_context(|| format!("{} is not an OpenSSH private key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (text, public) = crate::gateway::key_pair("slices-gateway")?;
            let key = PrivateKey::from_openssh(text.trim()).context("cannot make a host key")?;
            crate::gateway::local::write_private(&path, text.as_bytes())?;
            crate::gateway::local::write_private(&path.with_extension("pub"), public.as_bytes())?;
            tracing::info!(path = %path.display(), fingerprint = %fingerprint_of(&key), "ssh gateway: made its host key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn fingerprint_of(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The host key's fingerprint as `ssh-keygen -l` prints it, for the dashboard: read once per
/// data folder (None: the gateway has not made its key yet).
pub fn fingerprint(data: &Path) -> Option<String> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(f) = cache.lock().ok()?.get(data) {
        return Some(f.clone());
    }
    let text = std::fs::read_to_string(host_key_path(data).with_extension("pub")).ok()?;
    let key = russh::keys::PublicKey::from_openssh(text.trim()).ok()?;
    let f = key.fingerprint(HashAlg::Sha256).to_string();
    cache.lock().ok()?.insert(data.to_path_buf(), f.clone());
    Some(f)
}

/// The running gateway: dropping it stops accepting; [`Running::stop`] also ends sessions.
pub struct Running {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts the gateway when the configuration turns it on (see `Config::builtin_ssh`).
pub async fn start(ctx: &Arc<Context>) -> anyhow::Result<Option<Running>> {
    let Some(addr) = ctx.config.builtin_ssh()? else {
        return Ok(None);
    };
    let key = host_key(&ctx.config.data)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("the built-in SSH gateway cannot listen on {addr} (ssh_listen)")
    })?;
    let addr = listener.local_addr()?;
    let _ = ctx.ssh_port.set(addr.port());
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Slices".into()),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    });
    let shared = Arc::new(handler::Shared::new(ctx.clone())?);
    tracing::info!(%addr, "ssh gateway: listening");
    let task = tokio::spawn(accept_loop(listener, config, shared));
    Ok(Some(Running { addr, task }))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<handler::Shared>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Default::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait, never stop serving.
                        tracing::warn!(error = %e, "ssh gateway: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(slot) = Slot::take(&per_address, peer.ip(), sessions.len()) else {
                    tracing::debug!(%peer, "ssh gateway: too many connections");
                    continue;
                };
                let config = config.clone();
                let shared = shared.clone();
                sessions.spawn(async move {
                    let _slot = slot;
                    let _ = socket.set_nodelay(true);
                    let (handler, record) = handler::Conn::new(shared.clone(), peer);
                    // The key exchange and log-in must be done within a minute.
                    let session = tokio::time::timeout(
                        Duration::from_secs(60),
                        russh::server::run_stream(config, socket, handler),
                    )
                    .await;
                    match session {
                        Ok(Ok(session)) => {
                            if let Err(e) = session.await {
                                tracing::debug!(%peer, error = %e, "ssh gateway: session ended");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ssh gateway: no session"),
                        Err(_) => tracing::debug!(%peer, "ssh gateway: handshake too slow"),
                    }
                    shared.finish(record).await;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// A connection's place in the caps; given back when dropped.
struct Slot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Slot {
    fn take(map: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, open: usize) -> Option<Slot> {
        let mut m = map.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_PER_ADDRESS || open >= MAX_CONNECTIONS {
            return None;
        }
        *n += 1;
        Some(Slot {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Why a slice cannot be reached now, in one line, and the exit status that goes with it
/// (None: it can be tried).
fn not_reachable(t: &crate::records::gateway::LoginTarget, dash: &str) -> Option<(String, u32)> {
    let name = &t.name;
    if t.simulated {
        return Some((format!("slices: {name} is a simulated slice: the built-in demo node runs no machine, so there is nothing to log in to. Lab staff run real slices on real nodes."), 1));
    }
    let line = match (t.state.as_str(), &t.ip) {
        ("running", Some(_)) => return None,
        ("stopped", _) => format!("slices: your slice {name} is stopped. Start it at {dash}."),
        ("failed", _) => format!("slices: your slice {name} could not be made. The lab staff have been told; see {dash}."),
        ("destroying", _) => format!("slices: your slice {name} is being destroyed."),
        ("requested" | "approved" | "queued", _) => format!("slices: your slice {name} is waiting for the lab staff's approval or a place on a node ({}).", t.state),
        _ => format!("slices: your slice {name} is being set up ({}). Try again in a minute; {dash} shows how far it is.", t.state),
    };
    Some((line, 1))
}

/// The private hop key the master keeps for `username` (None: none yet, or a remote target).
fn hop_key(gateway: &crate::gateway::Settings, username: &str) -> Option<PrivateKey> {
    let user = crate::domain::Username::parse(username).ok()?;
    let path = crate::gateway::local::hop_key_file(gateway, &user)?;
    let text = std::fs::read_to_string(path).ok()?;
    PrivateKey::from_openssh(text.trim()).ok()
}

/// A shell with a terminal in a slice, for the browser terminal: the same way in as an ssh
/// login through the gateway (the owner, the hop key, the host key kept).
pub struct Shell {
    /// Keeps the connection to the slice open.
    _link: upstream::Link,
    pub channel: russh::Channel<russh::client::Msg>,
}

/// Opens a shell with a `cols` x `rows` terminal in the slice (Err: one line that says why not).
pub async fn open_shell(
    ctx: &Arc<Context>,
    slice_id: i64,
    cols: u32,
    rows: u32,
) -> Result<Shell, String> {
    let c = ctx.clone();
    let target = tokio::task::spawn_blocking(move || {
        c.db.read(|conn| crate::records::gateway::login_target_of(conn, slice_id))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?
    .ok_or_else(|| "slices: this slice is gone.".to_string())?;
    let dashboard = crate::gateway::printable_url(&ctx.base_url());
    if let Some((line, _)) = not_reachable(&target, &dashboard) {
        return Err(line);
    }
    let gateway = crate::gateway::Settings::from_config(&ctx.config).map_err(|e| e.to_string())?;
    let key = hop_key(&gateway, &target.username);
    let ip = target.ip.clone().unwrap_or_default();
    let link = upstream::connect(ctx, &target, &ip, key)
        .await
        .map_err(|e| e.line(&target.name, &dashboard))?;
    let failed = |e: russh::Error| format!("slices: the slice refused a terminal ({e}).");
    let channel = link.channel_open_session().await.map_err(failed)?;
    channel
        .request_pty(false, "xterm-256color", cols, rows, 0, 0, &[])
        .await
        .map_err(failed)?;
    channel.request_shell(false).await.map_err(failed)?;
    Ok(Shell {
        _link: link,
        channel,
    })
}
