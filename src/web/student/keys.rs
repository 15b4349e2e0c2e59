//! The student's SSH keys (`/keys`).

use crate::domain::SshPublicKey;
use crate::error::Error;
use crate::ops::accounts::{self, keys, Actor};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{LoggedIn, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

async fn keys_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    session: &accounts::Session,
    typed: &str,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let id = session.user.id;
    let list = state.read(move |c| keys::list(c, id)).await?;
    let site = state.ctx.site();
    let mut page = Page::new("keys.html")
        .with("keys", &list)
        .with("typed", &typed)
        .with("max_keys", &keys::MAX_KEYS)
        .with(
            "ssh",
            &site.ssh_command(site.login_name(
                &session.user.username,
                &session.user.username.replace('_', "-"),
            )),
        );
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/keys")]
async fn keys_list(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
) -> Result<HttpResponse, WebError> {
    keys_page(&state, &req, &viewer, &session, "", None).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
}

#[post("/keys")]
async fn add(
    state: State,
    req: HttpRequest,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<KeyForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let (id, ip, text) = (session.user.id, viewer.ip.clone(), form.key.clone());
    let result = state
        .run(move |db| {
            let key = SshPublicKey::parse(&text)?;
            db.write(|tx| {
                keys::add(
                    tx,
                    id,
                    &key,
                    &Actor {
                        user_id: Some(id),
                        ip: &ip,
                    },
                )
            })
        })
        .await;
    match result {
        Ok(k) => Ok(see_other(
            &state,
            "/keys",
            Some(&format!(
                "Key added ({}). The gateway takes it within a few seconds.",
                k.fingerprint
            )),
        )),
        Err(e @ Error::Invalid(_)) => {
            keys_page(&state, &req, &viewer, &session, &form.key, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[get("/keys/{id}/remove")]
async fn confirm_remove(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (key_id, user_id) = (id.into_inner(), session.user.id);
    let key = state
        .read(move |c| keys::list(c, user_id))
        .await?
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or(WebError::NotFound)?;
    Page::new("key_remove.html")
        .with("key", &key)
        .render(&state, &req, &viewer)
}

#[post("/keys/{id}/remove")]
async fn remove(
    state: State,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (key_id, user_id, ip) = (id.into_inner(), session.user.id, posted.viewer.ip.clone());
    let fingerprint = state
        .run(move |db| {
            db.write(|tx| {
                keys::remove(
                    tx,
                    user_id,
                    key_id,
                    &Actor {
                        user_id: Some(user_id),
                        ip: &ip,
                    },
                )
            })
        })
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => WebError::NotFound,
            e => e.into(),
        })?;
    Ok(see_other(
        &state,
        "/keys",
        Some(&format!(
            "Key {fingerprint} removed; it no longer opens your gateway login."
        )),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(keys_list)
        .service(add)
        .service(confirm_remove)
        .service(remove);
}
