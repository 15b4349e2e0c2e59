//! Who is asking: the session behind the cookie, the client's address, the form token and
//! the one-line notice carried across a redirect.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::Role;
use crate::ops::accounts::{sessions, token, Origin, Session, User};
use crate::web::error::WebError;
use crate::web::State;

/// The request's viewer: a live session or nobody, plus what the form token is bound to.
#[derive(Clone)]
pub struct Viewer {
    pub session: Option<Session>,
    /// The cookie value the form token is derived from (the session's, or an anonymous one).
    csrf_basis: String,
    /// An anonymous basis made for this request, to be sent as a cookie.
    pub new_csrf_cookie: Option<String>,
    pub ip: String,
    pub user_agent: String,
}

pub fn session_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-slices_session"
    } else {
        "slices_session"
    }
}

/// Whether a cookie name (any case) is one of the master's own, over HTTP or HTTPS.
pub fn is_master_cookie(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    [true, false].iter().any(|&https| {
        [session_cookie_name(https), csrf_cookie_name(https)]
            .iter()
            .any(|own| own.eq_ignore_ascii_case(&name))
    })
}

pub fn csrf_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-slices_csrf"
    } else {
        "slices_csrf"
    }
}

const FLASH: &str = "slices_flash";

/// A cookie with the attributes every Slices cookie has.
pub fn cookie(
    state: &State,
    name: &'static str,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.https)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

/// `/login?next=PATH` for a local path.
pub fn login_url(next: &str) -> String {
    if next.is_empty() || next == "/" {
        "/login".into()
    } else {
        format!("/login?next={}", url_escape(next))
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a local absolute path may be a redirect target (never `//host` or `/\host`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() < 512
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// The client's address: the peer's, or behind a trusted proxy the last X-Forwarded-For entry
/// (the one that proxy wrote; the ones before it are the client's own words).
fn client_ip(state: &State, req: &HttpRequest) -> String {
    if state.ctx.config.trust_forwarded_for {
        if let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
        {
            return ip.to_string();
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

pub(crate) fn sign(state: &State, purpose: &str, data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.ctx.secret).expect("HMAC takes any key");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(data.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn verify_sig(state: &State, purpose: &str, data: &str, sig: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = sign(state, purpose, data);
    want.as_bytes().ct_eq(sig.as_bytes()).into()
}

impl Viewer {
    pub fn user(&self) -> Option<&User> {
        self.session.as_ref().map(|s| &s.user)
    }

    pub fn origin(&self) -> Origin {
        Origin {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The token every form of this viewer carries.
    pub fn csrf_token(&self, state: &State) -> String {
        sign(state, "csrf", &self.csrf_basis)
    }

    pub fn csrf_ok(&self, state: &State, token: &str) -> bool {
        !self.csrf_basis.is_empty() && verify_sig(state, "csrf", &self.csrf_basis, token)
    }

    async fn load(state: State, req: HttpRequest) -> Result<Viewer, WebError> {
        // A cookie of ours sent twice was planted beside the real one (a page on a sibling
        // host can set cookies for a parent domain over plain HTTP): neither is trusted.
        let once = |name: &str| -> Option<String> {
            let all = req.cookies().ok()?;
            let mut it = all.iter().filter(|c| c.name() == name);
            let first = it.next()?.value().to_string();
            it.next().is_none().then_some(first)
        };
        let https = state.https;
        let ip = client_ip(&state, &req);
        let user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut session = None;
        let mut basis = String::new();
        if let Some(value) = once(session_cookie_name(https)) {
            if token::looks_like_token(&value) {
                let life = state.ctx.policy.life;
                let v = value.clone();
                session = state
                    .read_now(move |c| sessions::lookup(c, &v, life))
                    .await?;
                if let Some(s) = &session {
                    // Seen at most once a minute: a write only then.
                    if s.last_seen_at < crate::store::now() - 60 {
                        let hash = s.token_hash.clone();
                        state.write(move |tx| sessions::touch(tx, &hash)).await?;
                    }
                }
                if session.is_some() {
                    basis = value;
                }
            }
        }
        let mut new_csrf_cookie = None;
        if session.is_none() {
            match once(csrf_cookie_name(https)) {
                Some(c) if token::looks_like_token(&c) => basis = c,
                _ => {
                    basis = token::new_token();
                    new_csrf_cookie = Some(basis.clone());
                }
            }
        }
        Ok(Viewer {
            session,
            csrf_basis: basis,
            new_csrf_cookie,
            ip,
            user_agent,
        })
    }

    /// The notice left by the previous request (if its signature holds).
    pub fn flash(req: &HttpRequest, state: &State) -> Option<String> {
        let c = req.cookie(FLASH)?;
        let (msg, sig) = c.value().rsplit_once('.')?;
        if !verify_sig(state, "flash", msg, sig) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(msg).ok()?;
        String::from_utf8(bytes).ok()
    }
}

/// A signed cookie carrying a short notice to the next page.
pub fn flash_cookie(state: &State, message: &str) -> Cookie<'static> {
    let msg = URL_SAFE_NO_PAD.encode(message.as_bytes());
    let sig = sign(state, "flash", &msg);
    cookie(state, FLASH, format!("{msg}.{sig}"), 60)
}

pub fn clear_flash_cookie(state: &State) -> Cookie<'static> {
    cookie(state, FLASH, String::new(), 0)
}

impl FromRequest for Viewer {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(v) = req.extensions().get::<Viewer>() {
                return Ok(v.clone());
            }
            let state = req
                .app_data::<State>()
                .cloned()
                .ok_or_else(|| WebError::Internal(anyhow::anyhow!("no app state")))?;
            let v = Viewer::load(state, req.clone()).await?;
            req.extensions_mut().insert(v.clone());
            Ok(v)
        })
    }
}

/// A logged-in viewer; anyone else is sent to the log-in page and back.
pub struct LoggedIn(pub Viewer, pub Session);

impl FromRequest for LoggedIn {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = Viewer::from_request(req, payload);
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        Box::pin(async move {
            let v = fut.await?;
            match v.session.clone() {
                Some(s) => Ok(LoggedIn(v, s)),
                None => Err(WebError::LoginFirst(if next.starts_with("/logout") {
                    String::new()
                } else {
                    next
                })),
            }
        })
    }
}

/// A logged-in staff member or admin; a student gets 403.
pub struct StaffOnly(pub Viewer, pub Session);

impl FromRequest for StaffOnly {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = LoggedIn::from_request(req, payload);
        Box::pin(async move {
            let LoggedIn(v, s) = fut.await?;
            if s.user.role >= Role::Staff {
                Ok(StaffOnly(v, s))
            } else {
                Err(WebError::Forbidden("This page is for lab staff.".into()))
            }
        })
    }
}
