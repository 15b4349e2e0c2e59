//! Mail-driven pages: confirming an address, resetting a password, and the staff outbox.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::form::{NoFields, Posted};
use super::render::{see_other, Page, Pager};
use super::session::{LoggedIn, StaffOnly, Viewer};
use super::State;
use crate::error::Error;
use crate::mail;
use crate::ops::accounts;

/// The link in the sign-up mail shows a button (mail scanners that follow links change
/// nothing); the button confirms.
#[get("/verify/{token}")]
async fn verify_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
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
    let user = state
        .ctx
        .db
        .run(move |db| accounts::verify_email(db, &token, &ip))
        .await?;
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

#[post("/account/verify/resend")]
async fn resend(
    state: State,
    LoggedIn(_, session): LoggedIn,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let user = session.user.clone();
    let sent = state
        .ctx
        .db
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
    match state.ctx.db.run(move |db| accounts::request_reset(db, &login, &ip)).await {
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
        .ctx
        .db
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
        .ctx
        .db
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

#[post("/staff/users/{username}/verify")]
async fn staff_verify(
    state: State,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (actor, ip, name) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        username.into_inner(),
    );
    let user = state
        .ctx
        .db
        .run(move |db| accounts::verify_by_staff(db, &actor, &name, &ip))
        .await?;
    Ok(see_other(
        &state,
        &format!(
            "/staff/users/{}",
            super::session::url_escape(&user.username)
        ),
        Some(&format!("{} is confirmed by hand.", user.email)),
    ))
}

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Serialize, Default)]
pub struct OutboxQuery {
    #[serde(default)]
    state: String,
    page: Option<u64>,
}

#[derive(Serialize)]
struct Row {
    message: mail::Message,
    subject: String,
}

#[get("/staff/outbox")]
async fn outbox(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<OutboxQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    const STATES: [&str; 4] = ["queued", "sending", "sent", "failed"];
    if !q.state.is_empty() && !STATES.contains(&q.state.as_str()) {
        return Err(WebError::BadRequest("No such state.".into()));
    }
    let filter = (!q.state.is_empty()).then(|| q.state.clone());
    let offset = Pager::offset_for(q.page, PER_PAGE);
    let (messages, total) = state
        .ctx
        .db
        .run(move |db| db.read(|c| mail::list(c, filter.as_deref(), PER_PAGE, offset)))
        .await?;
    let site = state.ctx.site();
    let rows: Vec<Row> = messages
        .into_iter()
        .map(|m| {
            let subject = mail::Kind::parse(&m.kind)
                .and_then(|k| mail::render(k, &mail::without_secrets(&m.data), &site).ok())
                .map(|r| r.subject)
                .unwrap_or_else(|| format!("({})", m.kind));
            Row {
                message: m,
                subject,
            }
        })
        .collect();
    let pager = Pager::new(q.page, PER_PAGE, total);
    let link = format!("state={}", super::session::url_escape(&q.state));
    Page::new("staff/outbox.html")
        .with("rows", &rows)
        .with("query", &q)
        .with("pager", &pager)
        .with("link", &link)
        .with("states", &STATES)
        .with("transport", &state.ctx.config.mail_transport)
        .render(&state, &req, &viewer)
}

#[get("/staff/outbox/{id}")]
async fn outbox_message(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let m = state
        .ctx
        .db
        .run(move |db| db.read(|c| mail::get(c, id)))
        .await?
        .ok_or(WebError::NotFound)?;
    let site = state.ctx.site();
    let kind = mail::Kind::parse(&m.kind).ok_or(WebError::NotFound)?;
    let rendered =
        mail::render(kind, &mail::without_secrets(&m.data), &site).map_err(WebError::from)?;
    Page::new("staff/message.html")
        .with("message", &m)
        .with("rendered", &rendered)
        .render(&state, &req, &viewer)
}

#[post("/staff/outbox/{id}/retry")]
async fn outbox_retry(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let again = state
        .ctx
        .db
        .run(move |db| db.write(|tx| mail::retry(tx, id)))
        .await?;
    let notice = if again {
        "The message is queued again."
    } else {
        "Only a failed message can be sent again."
    };
    Ok(see_other(
        &state,
        &format!("/staff/outbox/{id}"),
        Some(notice),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(verify_page)
        .service(verify)
        .service(resend)
        .service(forgot_page)
        .service(forgot)
        .service(reset_page)
        .service(reset)
        .service(staff_verify)
        .service(outbox)
        .service(outbox_message)
        .service(outbox_retry);
}
