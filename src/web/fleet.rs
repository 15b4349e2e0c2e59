//! Staff: jobs (failed first; retry, cancel) and nodes (health, capacity, drain, enable).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::form::{NoFields, Posted};
use super::render::{see_other, Page};
use super::session::StaffOnly;
use super::State;
use crate::error::Error;
use crate::jobs::queue;

#[derive(Deserialize, Serialize, Default)]
pub struct JobsQuery {
    #[serde(default)]
    state: String,
}

#[get("/staff/jobs")]
async fn jobs(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<JobsQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];
    if !q.state.is_empty() && !STATES.contains(&q.state.as_str()) {
        return Err(WebError::BadRequest("No such state.".into()));
    }
    let filter = (!q.state.is_empty()).then(|| q.state.clone());
    let rows = state
        .ctx
        .db
        .run(move |db| db.read(|c| queue::list(c, filter.as_deref(), 200)))
        .await?;
    Page::new("staff/jobs.html")
        .with("jobs", &rows)
        .with("query", &q)
        .with("states", &STATES)
        .render(&state, &req, &viewer)
}

#[get("/staff/jobs/{id}")]
async fn job(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (job, log) = state
        .ctx
        .db
        .run(move |db| {
            db.read(|c| {
                Ok::<_, Error>((
                    queue::get(c, id)?,
                    queue::command_log(c, Some(id), None, 200)?,
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

#[post("/staff/jobs/{id}/{action}")]
async fn job_action(
    state: State,
    _staff: StaffOnly,
    path: web::Path<(i64, String)>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (id, action) = path.into_inner();
    let done = match action.as_str() {
        "retry" => {
            state
                .ctx
                .db
                .run(move |db| db.write(|tx| queue::retry_now(tx, id)))
                .await?
        }
        "cancel" => {
            state
                .ctx
                .db
                .run(move |db| db.write(|tx| queue::cancel(tx, id)))
                .await?
        }
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

#[get("/staff/nodes")]
async fn nodes(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    let rows = state
        .ctx
        .db
        .run(|db| {
            db.read(|c| {
                let nodes = crate::nodes::list(c)?;
                let mut out = Vec::new();
                for n in nodes {
                    let slices: i64 = c.query_row(
                        "SELECT count(*) FROM slices WHERE node_id = ?1 AND state IN ('provisioning', 'running', 'stopped', 'destroying')",
                        [n.id],
                        |r| r.get(0),
                    )?;
                    out.push(serde_json::json!({ "node": n, "slices": slices }));
                }
                Ok::<_, Error>(out)
            })
        })
        .await?;
    Page::new("staff/nodes.html")
        .with("rows", &rows)
        .with("now", &crate::store::now())
        .render(&state, &req, &viewer)
}

#[post("/staff/nodes/{name}/{action}")]
async fn node_action(
    state: State,
    StaffOnly(_, session): StaffOnly,
    path: web::Path<(String, String)>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (name, action) = path.into_inner();
    let (column, value, said) = match action.as_str() {
        "drain" => ("draining", 1, "drains: it gets no new slices"),
        "undrain" => ("draining", 0, "takes new slices again"),
        "disable" => ("enabled", 0, "is disabled"),
        "enable" => ("enabled", 1, "is enabled"),
        _ => return Err(WebError::NotFound),
    };
    let (n, ip, actor) = (name.clone(), posted.viewer.ip.clone(), session.user.id);
    let changed = state
        .ctx
        .db
        .run(move |db| {
            db.write(|tx| {
                let changed = crate::nodes::set_flag(tx, &n, column, value)?;
                if changed {
                    crate::accounts::audit::record(
                        tx,
                        crate::accounts::audit::Event::NodeChanged,
                        &crate::accounts::Actor {
                            user_id: Some(actor),
                            ip: &ip,
                        },
                        &n,
                        &action,
                    )?;
                    crate::jobs::queue::wake_waiting(tx)?;
                }
                Ok::<_, Error>(changed)
            })
        })
        .await?;
    if !changed {
        return Err(WebError::NotFound);
    }
    Ok(see_other(
        &state,
        "/staff/nodes",
        Some(&format!("Node {name} {said}.")),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(jobs)
        .service(job)
        .service(job_action)
        .service(nodes)
        .service(node_action);
}
