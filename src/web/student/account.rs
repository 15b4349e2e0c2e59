//! The account page (`/account`): password, sessions, mail settings, confirming the
//! address again.

use crate::error::Error;
use crate::ops::accounts::{self, sessions};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{cookie, session_cookie_name, LoggedIn, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

async fn account_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    session: &accounts::Session,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let id = session.user.id;
    let count = state.read(move |c| sessions::count_for(c, id)).await?;
    let id = session.user.id;
    let request_mail = state
        .read(move |c| crate::ops::accounts::users::request_mail(c, id))
        .await?;
    let mut page = Page::new("account.html")
        .with("user", &session.user)
        .with("session_count", &count)
        .with("request_mail", &request_mail);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/account")]
async fn account(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
) -> Result<HttpResponse, WebError> {
    account_page(&state, &req, &viewer, &session, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
}

#[post("/account/password")]
async fn change_password(
    state: State,
    req: HttpRequest,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let s = session.clone();
    let ip = viewer.ip.clone();
    let result = state
        .run(move |db| {
            accounts::change_password(
                db,
                &s,
                &form.current_password,
                &form.new_password,
                &form.new_password_confirm,
                &ip,
            )
        })
        .await;
    match result {
        Ok(()) => Ok(see_other(
            &state,
            "/account",
            Some("Your password is changed. Your other sessions have ended."),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            account_page(&state, &req, &viewer, &session, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/account/logout-everywhere")]
async fn logout_everywhere(
    state: State,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let ip = posted.viewer.ip.clone();
    let user = session.user.clone();
    let n = state
        .run(move |db| accounts::logout_everywhere(db, &user, &ip))
        .await?;
    let mut resp = see_other(
        &state,
        "/login",
        Some(&format!(
            "You are logged out everywhere ({n} sessions ended)."
        )),
    );
    let _ = resp.add_cookie(&cookie(
        &state,
        session_cookie_name(state.https),
        String::new(),
        0,
    ));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct RequestMailForm {
    #[serde(default)]
    request_mail: String,
}

#[post("/account/request-mail")]
async fn set_request_mail(
    state: State,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<RequestMailForm>,
) -> Result<HttpResponse, WebError> {
    if !session.user.role.is_staff() {
        return Err(WebError::Forbidden("This setting is for lab staff.".into()));
    }
    let (id, how) = (session.user.id, posted.form.request_mail.clone());
    state
        .write(move |tx| crate::ops::accounts::users::set_request_mail(tx, id, &how))
        .await?;
    Ok(see_other(
        &state,
        "/account",
        Some("Saved: how you hear of new requests."),
    ))
}

#[post("/account/verify/resend")]
async fn resend(
    state: State,
    LoggedIn(_, session): LoggedIn,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let user = session.user.clone();
    let sent = state
        .run(move |db| accounts::resend_verification(db, &user))
        .await?;
    let notice = if sent {
        format!(
            "A new confirmation link is on its way to {}.",
            session.user.email
        )
    } else {
        "No new link was sent: the address is confirmed, or three links went out in the last hour."
            .into()
    };
    Ok(see_other(&state, "/", Some(&notice)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(account)
        .service(change_password)
        .service(logout_everywhere)
        .service(set_request_mail)
        .service(resend);
}
