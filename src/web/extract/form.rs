//! `Posted<T>`: the only way a handler receives a form. It reads the body within the size
//! limit, refuses text that is not UTF-8, checks the Origin/Referer and the form token, and
//! only then deserializes `T`. A handler cannot forget the CSRF check.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::web::error::WebError;
use crate::web::extract::session::Viewer;
use crate::web::State;

pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// A form with nothing but its token (log out, enable, ...).
#[derive(serde::Deserialize)]
pub struct NoFields {}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

/// Decodes `application/x-www-form-urlencoded` strictly: every name and value must be UTF-8
/// once percent-decoded (the usual decoders silently replace bad bytes).
fn strictly_utf8(body: &[u8]) -> Result<(), WebError> {
    for pair in body.split(|b| *b == b'&') {
        let plus_fixed: Vec<u8> = pair
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        let decoded: Vec<u8> = percent_decode(&plus_fixed);
        if std::str::from_utf8(&decoded).is_err() {
            return Err(WebError::BadRequest(
                "The form contained text that is not valid UTF-8. Nothing was changed.".into(),
            ));
        }
    }
    Ok(())
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// The host part of `scheme://host[:port]/...`.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// A state-changing request must come from our own pages: its Origin (or, failing that, its
/// Referer) must name this host.
fn same_origin(state: &State, req: &HttpRequest) -> bool {
    origin_is_ours(state, req, false)
}

/// Whether the Origin (or, failing that, the Referer) names this host. `required`: a request
/// naming neither is refused (a browser names the page that opens a websocket).
pub fn origin_is_ours(state: &State, req: &HttpRequest, required: bool) -> bool {
    let info = req.connection_info();
    let own = info.host().to_ascii_lowercase();
    let public = host_of(&state.base_url).map(str::to_ascii_lowercase);
    let matches = |url: &str| match host_of(url) {
        Some(h) => {
            let h = h.to_ascii_lowercase();
            h == own || Some(&h) == public.as_ref()
        }
        None => false,
    };
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        return origin.to_str().map(matches).unwrap_or(false);
    }
    if let Some(referer) = req.headers().get(header::REFERER) {
        return referer.to_str().map(matches).unwrap_or(false);
    }
    // Neither header (some privacy tools strip both): the form token alone decides.
    !required
}

impl<T: DeserializeOwned + 'static> FromRequest for Posted<T> {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let viewer = Viewer::from_request(&req, &mut Payload::None);
        let body = Bytes::from_request(&req, payload);
        Box::pin(async move {
            let state = req
                .app_data::<State>()
                .cloned()
                .ok_or_else(|| WebError::Internal(anyhow::anyhow!("no app state")))?;
            let body = body.await.map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    WebError::TooLarge
                } else {
                    WebError::BadRequest("The form could not be read. Nothing was changed.".into())
                }
            })?;
            let viewer = viewer.await?;
            if !same_origin(&state, &req) {
                tracing::warn!(ip = %viewer.ip, path = %crate::web::trace::loggable_path(req.path()), "form from another origin refused");
                return Err(WebError::Csrf);
            }
            strictly_utf8(&body)?;
            let token: Token = serde_urlencoded::from_bytes(&body).map_err(|_| {
                WebError::BadRequest("The form could not be read. Nothing was changed.".into())
            })?;
            if !viewer.csrf_ok(&state, &token.csrf) {
                tracing::warn!(ip = %viewer.ip, path = %crate::web::trace::loggable_path(req.path()), "form token refused");
                return Err(WebError::Csrf);
            }
            let form: T = serde_urlencoded::from_bytes(&body).map_err(|e| {
                WebError::BadRequest(format!(
                    "The form could not be read ({e}). Nothing was changed."
                ))
            })?;
            Ok(Posted { viewer, form })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_checked_after_decoding() {
        assert!(strictly_utf8(b"a=caf%C3%A9&b=x+y").is_ok());
        assert!(strictly_utf8(b"a=%FF%FE").is_err());
        assert!(strictly_utf8(b"a=%C3").is_err());
        assert!(strictly_utf8(b"a=100%").is_ok());
        assert!(strictly_utf8(b"a=%zz").is_ok());
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("http://a.b:8080/x?y"), Some("a.b:8080"));
        assert_eq!(host_of("https://evil.example"), Some("evil.example"));
        assert_eq!(host_of("null"), None);
    }
}
