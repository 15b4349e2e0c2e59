//! `slices healthcheck`: exit 0 when the running server answers /healthz.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::ConfigArgs;

pub async fn run(cfg: ConfigArgs, url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u,
        None => {
            let c = cfg.load(&[])?;
            let mut local = c.clone();
            if local.listen.ip().is_unspecified() {
                local.listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            local.public_url.clear();
            local.base_url()
        }
    };
    let cert = cfg.load(&[]).ok().and_then(|c| c.tls_cert);
    let body =
        tokio::task::spawn_blocking(move || http_get(&format!("{url}/healthz"), cert)).await??;
    println!("{body}");
    Ok(())
}

/// A minimal GET for the health check: plain HTTP, or HTTPS pinned to the configured
/// certificate. Returns the body of a 200 answer; anything else is an error.
pub fn http_get(url: &str, pinned_cert: Option<PathBuf>) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("the URL needs a scheme")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport}"))?
        .next()
        .context("no address")?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("nothing answers at {hostport}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    match scheme {
        "http" => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())?;
            tcp.read_to_end(&mut raw)?;
        }
        "https" => {
            let cert =
                pinned_cert.context("HTTPS health checks need tls_cert in the configuration")?;
            let config = crate::web::tls::pinned_client_config(&cert)?;
            let name = rustls::pki_types::ServerName::try_from("slices.invalid")?.to_owned();
            let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(request.as_bytes())?;
            let _ = tls.read_to_end(&mut raw);
        }
        other => bail!("unknown scheme {other}"),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("unhealthy: {status} {body}");
    }
    Ok(body.trim().to_string())
}
