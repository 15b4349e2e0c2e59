//! Jobs (`/staff/jobs`): the queue, one job with its agent commands, retry and cancel.

use crate::error::Error;
use crate::jobs::queue;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::StaffOnly;
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    /// Also the checks the master runs on its own (health, usage, reconcile...).
    #[serde(default)]
    routine: bool,
    #[serde(default)]
    page: Option<u64>,
}

#[get("/jobs")]
async fn jobs(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<JobsQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    use crate::records::jobs::STATES;
    if !q.state.is_empty() && !STATES.contains(&q.state.as_str()) {
        return Err(WebError::BadRequest("No such state.".into()));
    }
    if !q.kind.is_empty() && crate::jobs::JobKind::parse(&q.kind).is_none() {
        return Err(WebError::BadRequest("No such kind of job.".into()));
    }
    let kinds: Vec<&str> = crate::jobs::JobKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let filter = (!q.state.is_empty()).then(|| q.state.clone());
    let kind = (!q.kind.is_empty()).then(|| q.kind.clone());
    const PER_PAGE: u32 = 50;
    let offset = crate::web::page::Pager::offset_for(q.page, PER_PAGE);
    let routine = q.routine;
    let (rows, total, hidden) = state
        .run(move |db| {
            db.read(|c| {
                let (rows, total) = queue::page(
                    c,
                    filter.as_deref(),
                    kind.as_deref(),
                    routine,
                    offset,
                    PER_PAGE,
                )?;
                let hidden = if routine || kind.is_some() {
                    0
                } else {
                    crate::records::jobs::routine_hidden(c, filter.as_deref())?
                };
                Ok::<_, Error>((rows, total, hidden))
            })
        })
        .await?;
    let pager = crate::web::page::Pager::new(q.page, PER_PAGE, total);
    let routine_text = if q.routine { "true" } else { "" }.to_string();
    let link = serde_urlencoded::to_string([
        ("state", &q.state),
        ("kind", &q.kind),
        ("routine", &routine_text),
    ])
    .unwrap_or_default();
    let with_routine =
        serde_urlencoded::to_string([("state", &q.state), ("routine", &"true".to_string())])
            .unwrap_or_default();
    Page::new("staff/jobs.html")
        .with("jobs", &rows)
        .with("query", &q)
        .with("states", &STATES)
        .with("kinds", &kinds)
        .with("pager", &pager)
        .with("link", &link)
        .with("hidden", &hidden)
        .with("with_routine", &with_routine)
        .render(&state, &req, &viewer)
}

#[get("/jobs/{id}")]
async fn job(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (job, log) = state
        .run(move |db| {
            db.read(|c| {
                Ok::<_, Error>((
                    queue::get(c, id)?,
                    crate::records::agent_log::command_log(c, Some(id), None, 200)?,
                ))
            })
        })
        .await?;
    let job = job.ok_or(WebError::NotFound)?;
    Page::new("staff/job.html")
        .with("job", &job)
        .with("log", &log)
        .render(&state, &req, &viewer)
}

#[post("/jobs/{id}/{action}")]
async fn job_action(
    state: State,
    _staff: StaffOnly,
    path: web::Path<(i64, String)>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (id, action) = path.into_inner();
    let done = match action.as_str() {
        "retry" => state.write(move |tx| queue::retry_now(tx, id)).await?,
        "cancel" => state.write(move |tx| queue::cancel(tx, id)).await?,
        _ => return Err(WebError::NotFound),
    };
    let notice = match (action.as_str(), done) {
        ("retry", true) => "The job is queued again, from its last checkpoint.",
        ("retry", false) => "Only a failed or cancelled job can be tried again.",
        (_, true) => "The job is cancelled.",
        (_, false) => "The job has finished already.",
    };
    Ok(see_other(
        &state,
        &format!("/staff/jobs/{id}"),
        Some(notice),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(jobs).service(job).service(job_action);
}
