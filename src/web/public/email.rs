//! Pages reached from a mailed link: confirming an address (`/verify/TOKEN`) and a
//! forgotten password (`/forgot`, `/reset/TOKEN`).

use crate::error::Error;
use crate::ops::accounts;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::Viewer;
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// The link in the sign-up mail shows a button (mail scanners that follow links change
/// nothing); the button confirms.
#[get("/verify/{token}")]
async fn verify_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    if let Some(done) = already_confirmed(&state, &viewer) {
        return Ok(done);
    }
    Page::new("verify.html")
        .with("token", &token.into_inner())
        .render(&state, &req, &viewer)
}

#[post("/verify/{token}")]
async fn verify(
    state: State,
    token: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (token, ip) = (token.into_inner(), posted.viewer.ip.clone());
    let user = match state
        .run(move |db| accounts::verify_email(db, &token, &ip))
        .await
    {
        Ok(u) => u,
        Err(e) => {
            return match already_confirmed(&state, &posted.viewer) {
                Some(done) => Ok(done),
                None => Err(e.into()),
            }
        }
    };
    let to = if posted.viewer.session.is_some() {
        "/"
    } else {
        "/login"
    };
    Ok(see_other(
        &state,
        to,
        Some(&format!("Thank you: {} is confirmed.", user.email)),
    ))
}

/// A confirmed student who opens their (used) link again is told it is done, not refused.
fn already_confirmed(state: &State, viewer: &Viewer) -> Option<HttpResponse> {
    let u = viewer.user().filter(|u| u.email_verified_at.is_some())?;
    Some(see_other(
        state,
        "/",
        Some(&format!("{} is already confirmed.", u.email)),
    ))
}

#[get("/forgot")]
async fn forgot_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
) -> Result<HttpResponse, WebError> {
    Page::new("forgot.html").render(&state, &req, &viewer)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    login: String,
}

#[post("/forgot")]
async fn forgot(
    state: State,
    req: HttpRequest,
    posted: Posted<ForgotForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let (login, ip) = (form.login.clone(), viewer.ip.clone());
    match state.run(move |db| accounts::request_reset(db, &login, &ip)).await {
        Ok(()) => Ok(see_other(
            &state,
            "/login",
            Some("If that matches an account, a link to reset its password is on its way. It works for one hour."),
        )),
        Err(e @ Error::Invalid(_)) => Page::new("forgot.html").errors(&e).render(&state, &req, &viewer),
        Err(e) => Err(e.into()),
    }
}

#[get("/reset/{token}")]
async fn reset_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let token = token.into_inner();
    let t = token.clone();
    let live = state
        .run(move |db| {
            db.read(|c| accounts::email_tokens::peek(c, &t, accounts::email_tokens::Purpose::Reset))
        })
        .await?;
    if live.is_none() {
        return Err(WebError::Forbidden(
            "This link has been used or has expired. Ask for a new one on the log-in page.".into(),
        ));
    }
    Page::new("reset.html")
        .with("token", &token)
        .render(&state, &req, &viewer)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

#[post("/reset/{token}")]
async fn reset(
    state: State,
    req: HttpRequest,
    token: web::Path<String>,
    posted: Posted<ResetForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let token = token.into_inner();
    let (t, ip) = (token.clone(), viewer.ip.clone());
    let result = state
        .run(move |db| {
            accounts::reset_password(db, &t, &form.new_password, &form.new_password_confirm, &ip)
        })
        .await;
    match result {
        Ok(_) => Ok(see_other(
            &state,
            "/login",
            Some("Your password is changed. Log in with it; your other sessions have ended."),
        )),
        Err(e @ Error::Invalid(_)) => Page::new("reset.html")
            .with("token", &token)
            .errors(&e)
            .render(&state, &req, &viewer),
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(verify_page)
        .service(verify)
        .service(forgot_page)
        .service(forgot)
        .service(reset_page)
        .service(reset);
}
