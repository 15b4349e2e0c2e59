//! Slices (`/staff/slices`): search, a slice's page with its command log, changing its
//! plan, moving it to another node.

use crate::error::Error;
use crate::ops::slices;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{url_escape, StaffOnly};
use crate::web::page::{done_or_refused, Page, Pager};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Serialize, Default)]
pub struct SliceQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    page: Option<u64>,
}

/// A row of the list: only what it shows, flat (the template engine pays per segment of each
/// dotted name, and for every field of a value it is given).
#[derive(Serialize)]
struct ListRow {
    id: i64,
    hostname: String,
    username: String,
    state: slices::State,
    step: String,
    /// Node, address and end, or a dash: written here, not by a filter per cell.
    node: String,
    ip: String,
    ends: String,
    /// `<time>` of its last change, as the `when` filter writes it.
    changed: String,
}

#[get("/slices")]
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
    // A page without search text is bounded (counts kept, rows by id); a search may scan.
    let (rows, total) = if text.trim().is_empty() {
        state
            .read_now(move |c| slices::search(c, &text, st, PER_PAGE, offset))
            .await?
    } else {
        state
            .read(move |c| slices::search(c, &text, st, PER_PAGE, offset))
            .await?
    };
    // Each row's end: its own date, else its course's (the courses read once per page).
    let courses: std::collections::HashMap<String, i64> =
        if rows.iter().any(|r| !r.slice.course.is_empty()) {
            state
                .read_now(crate::records::courses::all)
                .await?
                .into_iter()
                .map(|c| (c.code, c.ends_at))
                .collect()
        } else {
            Default::default()
        };
    let rows = rows
        .into_iter()
        .map(|listed| {
            let s = listed.slice;
            let ends = s
                .expires_at
                .or_else(|| courses.get(&s.course).copied())
                .filter(|_| !matches!(s.state, slices::State::Denied | slices::State::Destroyed))
                .map(crate::ops::term::last_day);
            let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
            ListRow {
                id: s.id,
                hostname: s.hostname,
                username: listed.username,
                state: s.state,
                step: s.step,
                node: dash(listed.node),
                ip: dash(s.ip),
                ends: dash(ends),
                changed: crate::web::page::time_html(s.updated_at),
            }
        })
        .map(|row: ListRow| {
            state
                .pieces
                .render(&state.templates, "staff/slice_row.html", row.id, &row)
        })
        .collect::<Result<Vec<_>, _>>()?;
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
        .with("rows", &rows.iter().map(|r| &**r).collect::<Vec<&str>>())
        .with("query", &q)
        .with("pager", &pager)
        .with("link", &link)
        .with("states", &states)
        .render(&state, &req, &viewer)
}

#[get("/slices/{id}")]
async fn detail(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (slice, owner, node, events, log, jobs, (nodes, plans, usage, chart), ends) = state
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
                let (usage, chart) = crate::web::chart::for_page(c, s.id, &s.hostname)?;
                let ends = crate::ops::term::ends_at(c, &s)?;
                Ok::<_, Error>((
                    s,
                    owner,
                    node,
                    events,
                    log,
                    jobs,
                    (nodes, plans, usage, chart),
                    ends,
                ))
            })
        })
        .await?;
    let site = state.ctx.site();
    Page::new("staff/slice.html")
        .with("terminal", &site.terminal)
        .with(
            "ssh",
            &site.ssh_command(site.login_name(owner.username.as_str(), &slice.subdomain)),
        )
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
        .with("last_day", &ends.map(crate::ops::term::last_day))
        .with(
            "own_last_day",
            &slice.expires_at.map(crate::ops::term::last_day),
        )
        .render(&state, &req, &viewer)
}

#[derive(serde::Deserialize)]
pub struct EndForm {
    #[serde(default)]
    last_day: String,
}

/// Staff give a slice a last day of its own (empty: it ends with its course).
#[post("/slices/{id}/end")]
async fn set_end(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<EndForm>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (user, ip, day) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        posted.form.last_day.clone(),
    );
    let result = state
        .write(move |tx| {
            crate::ops::term::set_slice_end(tx, &user, id, &day, crate::store::now(), &ip)
        })
        .await;
    done_or_refused(
        &state,
        &format!("/staff/slices/{id}"),
        result,
        |s| match s.expires_at {
            Some(t) => format!(
                "{} now ends on {}.",
                s.hostname,
                crate::ops::term::last_day(t)
            ),
            None => format!("{} ends with its course again.", s.hostname),
        },
    )
}

#[derive(serde::Deserialize)]
pub struct PlanChange {
    #[serde(default)]
    plan: String,
}

/// Staff change a slice's plan; it is put in force on the node by a job.
#[post("/slices/{id}/plan")]
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
        .write(move |tx| slices::change_plan(tx, &user, id, plan))
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
#[post("/slices/{id}/move")]
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

/// Staff make a failed or lost slice again (provisioned anew where it was placed).
#[post("/slices/{id}/remake")]
async fn remake(
    state: State,
    StaffOnly(_, session): StaffOnly,
    id: web::Path<i64>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let (user, ip) = (session.user.clone(), posted.viewer.ip.clone());
    let result = state
        .write(move |tx| slices::remake(tx, &user, id, &ip))
        .await;
    done_or_refused(&state, &format!("/staff/slices/{id}"), result, |s| {
        format!("{} is being made again: follow it below.", s.hostname)
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(set_end)
        .service(list)
        .service(detail)
        .service(change_plan)
        .service(move_slice)
        .service(remake);
}
