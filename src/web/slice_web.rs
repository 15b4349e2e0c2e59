//! The built-in web gateway: a request for `NAME.<domain>` (by its Host header) is answered by
//! the slice that serves NAME, through its port 80, on the master's own port, with no Apache
//! and no DNS (browsers resolve `*.localhost` to this machine). An unknown, stopped or
//! simulated slice gets a page that says so. Only the slice's recorded private address is
//! ever reached, only its port 80; hop-by-hop headers and the master's own cookies are not
//! passed on, and the master's page headers (CSP and the like) are not put on a slice's
//! answers.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use crate::web::error::simple_page;
use crate::web::extract::session::is_master_cookie;
use crate::web::State;

/// Put on a proxied answer's extensions: the master's own page headers are left off it.
#[derive(Clone, Copy)]
pub struct Proxied;

/// The slice name a Host header asks for, if it is `NAME.<domain>` (a port allowed) and not
/// the master's own host.
pub fn slice_name(host: &str, domain: &str, own_host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.clone(),
    };
    if bare == own_host.to_ascii_lowercase() || domain.is_empty() {
        return None;
    }
    let name = bare.strip_suffix(&format!(".{}", domain.to_ascii_lowercase()))?;
    crate::gateway::valid_label(name).then(|| name.to_string())
}

/// Whether the request is for a slice's web address (the guard of the gateway's routes).
pub fn for_a_slice(state: &State, req: &actix_web::dev::RequestHead) -> bool {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    slice_name(host, &state.ctx.config.domain, &own_host(state)).is_some()
}

fn own_host(state: &State) -> String {
    state
        .base_url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Headers that belong to one connection, not to the request or answer (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(300))
            .no_proxy()
            .build()
            .expect("an HTTP client")
    })
}

fn page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let mut r = simple_page(status, title, message);
    r.extensions_mut().insert(Proxied);
    r
}

/// Answers a request for `NAME.<domain>` from the slice that serves NAME.
pub async fn serve(state: State, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(name) = slice_name(&host, &state.ctx.config.domain, &own_host(&state)) else {
        return page(StatusCode::NOT_FOUND, "Not found", "There is nothing here.");
    };
    let n = name.clone();
    let target = match state
        .read(move |c| crate::records::gateway::web_target(c, &n))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "web gateway: reading the slice");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available right now",
                "This address cannot be looked up right now. Try again in a moment.",
            );
        }
    };
    let base = state.base_url.clone();
    let Some(t) = target else {
        return page(
            StatusCode::NOT_FOUND,
            "No such slice",
            &format!("No slice serves {name} here. Slices are asked for at {base}/"),
        );
    };
    if t.simulated {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "A simulated slice",
            &format!(
                "{name} is a simulated slice (the built-in demo node): no machine is behind it, \
                 so there is no web server to reach."
            ),
        );
    }
    if t.state != "running" {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "This slice is not running",
            &format!("{name} is {}. Its owner can start it at {base}/", t.state),
        );
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        websocket(&req, body, &t.ip, &host, state.https).await
    } else {
        proxy(&req, body, &t.ip, &host, state.https).await
    }
}

/// The request head as sent to the slice: the client's headers but the hop-by-hop ones
/// (`keep` names those an upgrade needs), the master's cookies and any `X-Forwarded-*`; then
/// the slice's name and where the request came from.
fn forwarded_headers(
    req: &HttpRequest,
    host: &str,
    https: bool,
    keep: &[&str],
) -> Vec<(String, Vec<u8>)> {
    // Headers the client named in `Connection` are for this hop too.
    let named: Vec<String> = req
        .headers()
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    let mut out = Vec::new();
    for (k, v) in req.headers() {
        let name = k.as_str();
        if (HOP_BY_HOP.contains(&name) && !keep.contains(&name))
            || named.iter().any(|n| n == name)
            || ["host", "forwarded", "x-real-ip", "proxy-connection"].contains(&name)
            || name.starts_with("x-forwarded-")
        {
            continue;
        }
        if name == "cookie" {
            // The master's own cookies stay with the master.
            let kept: Vec<&str> = v
                .to_str()
                .unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|c| !is_master_cookie(c.split('=').next().unwrap_or_default()))
                .collect();
            if !kept.is_empty() {
                out.push((name.to_string(), kept.join("; ").into_bytes()));
            }
            continue;
        }
        out.push((name.to_string(), v.as_bytes().to_vec()));
    }
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    out.push(("host".into(), host.as_bytes().to_vec()));
    out.push(("x-forwarded-for".into(), peer.into_bytes()));
    out.push(("x-forwarded-host".into(), host.as_bytes().to_vec()));
    // How the master was reached, as the master knows it (not as the client claims).
    out.push((
        "x-forwarded-proto".into(),
        if https {
            b"https".to_vec()
        } else {
            b"http".to_vec()
        },
    ));
    out
}

/// A websocket (an HTTP/1.1 upgrade) passed through to the slice's port 80 byte for byte:
/// the request head is written to the slice, its answer read; a `101` is passed back and the
/// two connections are joined until either ends.
async fn websocket(
    req: &HttpRequest,
    mut body: web::Payload,
    ip: &str,
    host: &str,
    https: bool,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let failed = || {
        page(
            StatusCode::BAD_GATEWAY,
            "The slice did not answer",
            "Nothing on port 80 of this slice took the websocket.",
        )
    };
    let connect = tokio::net::TcpStream::connect((ip, 80));
    let Ok(Ok(mut up)) = tokio::time::timeout(std::time::Duration::from_secs(5), connect).await
    else {
        return failed();
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut head = format!("GET {path} HTTP/1.1\r\n").into_bytes();
    for (k, v) in forwarded_headers(req, host, https, &["connection", "upgrade"]) {
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(&v);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if up.write_all(&head).await.is_err() {
        return failed();
    }
    // The slice's answer head (at most 16 KiB, within 10 s).
    let mut got = Vec::with_capacity(1024);
    let end = loop {
        let mut buf = [0u8; 2048];
        let n = match tokio::time::timeout(std::time::Duration::from_secs(10), up.read(&mut buf))
            .await
        {
            Ok(Ok(n)) if n > 0 => n,
            _ => return failed(),
        };
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got.len() > 16 * 1024 {
            return failed();
        }
    };
    let text = String::from_utf8_lossy(&got[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    if status != Some(101) {
        return page(
            StatusCode::BAD_GATEWAY,
            "The slice refused the websocket",
            &format!(
                "Port 80 of this slice answered {} to it.",
                status.unwrap_or(0)
            ),
        );
    }
    let mut resp = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    resp.upgrade("websocket");
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        resp.append_header((k, v.trim().to_string()));
    }
    let early = web::Bytes::copy_from_slice(&got[end..]);
    let (from_slice, mut to_slice) = up.into_split();
    // The client's bytes to the slice.
    actix_web::rt::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            if to_slice.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_slice.shutdown().await;
    });
    // The slice's bytes to the client (what came with its answer head first).
    let stream = futures_util::stream::unfold(
        (Some(early), from_slice),
        |(first, mut from_slice)| async move {
            if let Some(b) = first.filter(|b| !b.is_empty()) {
                return Some((Ok::<_, std::io::Error>(b), (None, from_slice)));
            }
            let mut buf = vec![0u8; 16 * 1024];
            match from_slice.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(web::Bytes::from(buf)), (None, from_slice)))
                }
            }
        },
    );
    let mut resp = resp.streaming(stream);
    resp.extensions_mut().insert(Proxied);
    resp
}

async fn proxy(
    req: &HttpRequest,
    mut body: web::Payload,
    ip: &str,
    host: &str,
    https: bool,
) -> HttpResponse {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://{ip}:80{path}");
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "Unknown method.",
        );
    };
    let mut out = client().request(method, &url);
    for (k, v) in forwarded_headers(req, host, https, &[]) {
        out = out.header(k, v);
    }
    // The body, as it comes (the handler's payload is not Send: a channel carries it).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    out = out.body(reqwest::Body::wrap_stream(stream));
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(%url, error = %e, "web gateway: the slice did not answer");
            return page(
                StatusCode::BAD_GATEWAY,
                "The slice did not answer",
                "Nothing answered on port 80 of this slice. If it is yours: start a web server \
                 listening on port 80 in it.",
            );
        }
    };
    let mut resp = HttpResponse::build(
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    for (k, v) in answer.headers() {
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        if k.as_str() == "set-cookie" && !own_cookie(v.to_str().unwrap_or_default()) {
            tracing::info!(
                host,
                "web gateway: a slice's cookie for other hosts left out"
            );
            continue;
        }
        resp.append_header((k.as_str(), v.as_bytes()));
    }
    let mut resp = resp.streaming(
        answer
            .bytes_stream()
            .map(|c| c.map_err(actix_web::error::ErrorBadGateway)),
    );
    resp.extensions_mut().insert(Proxied);
    resp
}

/// Whether a slice's `Set-Cookie` keeps to its own host: one naming a `Domain` could reach
/// the master (a parent of the slice's name) or other slices, and one named like the
/// master's would shadow its session; both are left out.
fn own_cookie(set_cookie: &str) -> bool {
    let lower = set_cookie.to_ascii_lowercase();
    let name = lower.split('=').next().unwrap_or_default().trim();
    !lower
        .split(';')
        .skip(1)
        .any(|attr| attr.trim_start().starts_with("domain"))
        && !is_master_cookie(name)
}

#[cfg(test)]
mod tests {
    use super::{own_cookie, slice_name};

    #[test]
    fn a_slice_sets_cookies_for_itself_only() {
        assert!(own_cookie("sid=abc; Path=/; HttpOnly"));
        assert!(!own_cookie("sid=abc; Domain=slices.localhost; Path=/"));
        assert!(!own_cookie("sid=abc; path=/; DOMAIN=.example.edu"));
        assert!(!own_cookie("slices_session=evil; Path=/"));
    }

    #[test]
    fn names_come_only_from_one_label_under_the_domain() {
        let d = "slices.localhost";
        let own = "127.0.0.1";
        assert_eq!(
            slice_name("bob.slices.localhost:8080", d, own).as_deref(),
            Some("bob")
        );
        assert_eq!(
            slice_name("BOB.Slices.Localhost", d, own).as_deref(),
            Some("bob")
        );
        assert_eq!(slice_name("slices.localhost", d, own), None);
        assert_eq!(slice_name("a.b.slices.localhost", d, own), None);
        assert_eq!(slice_name("bob.example.org", d, own), None);
        assert_eq!(slice_name("127.0.0.1:8080", d, own), None);
        assert_eq!(slice_name("bad_name.slices.localhost", d, own), None);
        // The master's own host, under the domain, is the master's.
        assert_eq!(
            slice_name("slices.example.edu", "example.edu", "slices.example.edu"),
            None
        );
    }
}
