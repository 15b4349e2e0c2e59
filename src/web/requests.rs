//! Staff: the approval queue (approve, deny with a reason, bulk approve, filter by course and
//! age) and the slices (search, detail with the agent command log).

use std::collections::HashMap;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::form::Posted;
use super::render::{done_or_refused, see_other, Page, Pager};
use super::session::{url_escape, StaffOnly};
use super::State;
use crate::error::Error;
use crate::ops::slices;

#[derive(Deserialize, Serialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    course: String,
    /// Only requests older than this many days.
    #[serde(default)]
    days: Option<u32>,
}

#[get("/staff/requests")]
async fn queue(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    if q.course.chars().count() > 100 {
        return Err(WebError::BadRequest(
            "A course has at most 100 characters.".into(),
        ));
    }
    let (course, age) = (
        q.course.clone(),
        q.days.unwrap_or(0).min(3650) as i64 * 86400,
    );
    let (rows, courses, nodes) = state
        .ctx
        .db
        .run(move |db| {
            db.read(|c| {
                Ok::<_, Error>((
                    slices::waiting_requests(c, &course, age)?,
                    slices::waiting_courses(c)?,
                    crate::nodes::list(c)?,
                ))
            })
        })
        .await?;
    Page::new("staff/requests.html")
        .with("rows", &rows)
        .with("courses", &courses)
        .with("nodes", &nodes)
        .with("query", &q)
        .render(&state, &req, &viewer)
}

#[derive(Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    node: String,
}

#[post("/staff/requests/{id}/approve")]
async fn approve(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<ApproveForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let node = if posted.form.node.is_empty() {
        None
    } else {
        Some(
            posted
                .form
                .node
                .parse::<i64>()
                .map_err(|_| WebError::BadRequest("No such node.".into()))?,
        )
    };
    let (staff, ip) = (session.user.clone(), posted.viewer.ip.clone());
    let result = state
        .ctx
        .db
        .run(move |db| db.write(|tx| slices::approve(tx, &staff, id, node, &ip)))
        .await;
    match result {
        Ok(s) => Ok(see_other(
            &state,
            "/staff/requests",
            Some(&format!("Approved slice {} ({}).", s.id, s.hostname)),
        )),
        Err(Error::Forbidden(m)) => Ok(see_other(&state, "/staff/requests", Some(&m))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct DenyForm {
    #[serde(default)]
    reason: String,
}

#[post("/staff/requests/{id}/deny")]
async fn deny(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<DenyForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (staff, ip, reason) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        posted.form.reason.clone(),
    );
    let result = state
        .ctx
        .db
        .run(move |db| db.write(|tx| slices::deny(tx, &staff, id, &reason, &ip)))
        .await;
    done_or_refused(&state, "/staff/requests", result, |s| {
        format!("Denied slice {} ({}).", s.id, s.hostname)
    })
}

/// Approves every ticked request (`approve_ID=on`), in one transaction.
#[post("/staff/requests/approve")]
async fn bulk_approve(
    state: State,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<HashMap<String, String>>,
) -> Result<HttpResponse, WebError> {
    let ids: Vec<i64> = posted
        .form
        .keys()
        .filter_map(|k| k.strip_prefix("approve_"))
        .filter_map(|id| id.parse().ok())
        .collect();
    if ids.is_empty() {
        return Ok(see_other(
            &state,
            "/staff/requests",
            Some("Tick the requests to approve first."),
        ));
    }
    let (staff, ip) = (session.user.clone(), posted.viewer.ip.clone());
    let n = state
        .ctx
        .db
        .run(move |db| {
            db.write(|tx| {
                let mut n = 0;
                for id in &ids {
                    match slices::approve(tx, &staff, *id, None, &ip) {
                        Ok(_) => n += 1,
                        Err(Error::Forbidden(_) | Error::NotFound(_)) => {} // decided meanwhile
                        Err(e) => return Err(e),
                    }
                }
                Ok(n)
            })
        })
        .await?;
    Ok(see_other(
        &state,
        "/staff/requests",
        Some(&format!(
            "Approved {n} request{}.",
            if n == 1 { "" } else { "s" }
        )),
    ))
}

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Serialize, Default)]
pub struct SliceQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    page: Option<u64>,
}

#[get("/staff/slices")]
async fn list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<SliceQuery>,
) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let st = if q.state.is_empty() {
        None
    } else {
        Some(
            slices::State::parse(&q.state)
                .ok_or_else(|| WebError::BadRequest("No such state.".into()))?,
        )
    };
    if q.q.chars().count() > 200 {
        return Err(WebError::BadRequest(
            "A search has at most 200 characters.".into(),
        ));
    }
    let (text, offset) = (q.q.clone(), Pager::offset_for(q.page, PER_PAGE));
    let (rows, total) = state
        .ctx
        .db
        .run(move |db| db.read(|c| slices::search(c, &text, st, PER_PAGE, offset)))
        .await?;
    let pager = Pager::new(q.page, PER_PAGE, total);
    let link = format!("q={}&state={}", url_escape(&q.q), url_escape(&q.state));
    let states = [
        "requested",
        "approved",
        "queued",
        "provisioning",
        "running",
        "stopped",
        "failed",
        "denied",
        "destroying",
        "destroyed",
    ];
    Page::new("staff/slices.html")
        .with("rows", &rows)
        .with("query", &q)
        .with("pager", &pager)
        .with("link", &link)
        .with("states", &states)
        .render(&state, &req, &viewer)
}

#[get("/staff/slices/{id}")]
async fn detail(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (slice, owner, node, events, log, jobs, (nodes, plans, usage, chart)) = state
        .ctx
        .db
        .run(move |db| {
            db.read(|c| {
                let s = slices::get(c, id)?.ok_or(Error::NotFound("slice"))?;
                let owner = crate::ops::accounts::users::by_id(c, s.user_id)?
                    .ok_or(Error::NotFound("user"))?;
                let node = match s.node_id {
                    Some(n) => crate::nodes::by_id(c, n)?.map(|n| n.name),
                    None => None,
                };
                let events = slices::events(c, id, 50)?;
                let log = crate::records::agent_log::command_log(c, None, Some(id), 100)?;
                let jobs = crate::records::jobs::for_slice(c, id)?;
                let plans = slices::plan_choices(c)?;
                let nodes: Vec<String> = crate::nodes::list(c)?
                    .into_iter()
                    .filter(|n| n.enabled && Some(n.id) != s.node_id)
                    .map(|n| n.name)
                    .collect();
                let (usage, chart) = super::chart::for_page(c, s.id, &s.hostname)?;
                Ok::<_, Error>((
                    s,
                    owner,
                    node,
                    events,
                    log,
                    jobs,
                    (nodes, plans, usage, chart),
                ))
            })
        })
        .await?;
    let site = state.ctx.site();
    Page::new("staff/slice.html")
        .with("ssh", &site.ssh_command(&owner.username))
        .with("web", &site.web_address(&slice.subdomain))
        .with("slice", &slice)
        .with("owner", &owner)
        .with("node", &node)
        .with("events", &events)
        .with("log", &log)
        .with("jobs", &jobs)
        .with("nodes", &nodes)
        .with("plans", &plans)
        .with("usage", &usage)
        .with("chart", &chart)
        .render(&state, &req, &viewer)
}

#[derive(serde::Deserialize)]
pub struct PlanChange {
    #[serde(default)]
    plan: String,
}

/// Staff change a slice's plan; it is put in force on the node by a job.
#[post("/staff/slices/{id}/plan")]
async fn change_plan(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<PlanChange>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let user = session.user.clone();
    let plan: i64 = posted.form.plan.trim().parse().unwrap_or(0);
    let result = state
        .ctx
        .db
        .run(move |db| db.write(|tx| slices::change_plan(tx, &user, id, plan)))
        .await;
    done_or_refused(&state, &format!("/staff/slices/{id}"), result, |s| {
        format!("{}'s new plan is being put in force.", s.hostname)
    })
}

#[derive(serde::Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    node: String,
    #[serde(default)]
    confirm: String,
}

/// Staff move a slice to another node (made anew there; asked with a typed confirmation).
#[post("/staff/slices/{id}/move")]
async fn move_slice(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<MoveForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (user, form) = (session.user.clone(), posted.form);
    let back = format!("/staff/slices/{id}");
    let result = state
        .ctx
        .db
        .run(move |db| {
            db.write(|tx| {
                let s = slices::get(tx, id)?.ok_or(Error::NotFound("slice"))?;
                if form.confirm.trim() != s.hostname {
                    return Err(crate::domain::FieldError::new(
                        "confirm",
                        format!("Type the slice's name, {}, to move it.", s.hostname),
                    )
                    .into());
                }
                slices::move_to(tx, &user, id, form.node.trim())
            })
        })
        .await;
    done_or_refused(&state, &back, result, |s| {
        format!("{} is moving: follow it below.", s.hostname)
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(queue)
        .service(bulk_approve)
        .service(approve)
        .service(deny)
        .service(list)
        .service(detail)
        .service(move_slice)
        .service(change_plan);
}
