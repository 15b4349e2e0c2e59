//! The outbox (`/staff/outbox`): every message, its state, and retrying a failed one.

use crate::mail;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::StaffOnly;
use crate::web::page::{see_other, Page, Pager};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

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

#[get("/outbox")]
async fn outbox(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<OutboxQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    use crate::records::outbox::STATES;
    if !q.state.is_empty() && !STATES.contains(&q.state.as_str()) {
        return Err(WebError::BadRequest("No such state.".into()));
    }
    let filter = (!q.state.is_empty()).then(|| q.state.clone());
    let offset = Pager::offset_for(q.page, PER_PAGE);
    let (messages, total) = state
        .read(move |c| mail::list(c, filter.as_deref(), PER_PAGE, offset))
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
    let link = format!(
        "state={}",
        crate::web::extract::session::url_escape(&q.state)
    );
    Page::new("staff/outbox.html")
        .with("rows", &rows)
        .with("query", &q)
        .with("pager", &pager)
        .with("link", &link)
        .with("states", &STATES)
        .with("transport", &state.ctx.config.mail_transport)
        .render(&state, &req, &viewer)
}

#[get("/outbox/{id}")]
async fn outbox_message(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let m = state
        .read(move |c| mail::get(c, id))
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

#[post("/outbox/{id}/retry")]
async fn outbox_retry(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let again = state.write(move |tx| mail::retry(tx, id)).await?;
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
    cfg.service(outbox)
        .service(outbox_message)
        .service(outbox_retry);
}
