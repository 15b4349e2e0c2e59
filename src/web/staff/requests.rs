//! The approval queue (`/staff/requests`): filters, approve or deny one, approve many.

use crate::error::Error;
use crate::ops::slices;
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::StaffOnly;
use crate::web::page::{done_or_refused, see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Deserialize, Serialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    course: String,
    /// Only requests older than this many days.
    #[serde(default)]
    days: Option<u32>,
}

#[get("/requests")]
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
    let (rows, (total, newest), courses, nodes, extensions) = state
        .run(move |db| {
            db.read(|c| {
                let extensions: Vec<_> = crate::ops::term::waiting_extensions(c)?
                    .into_iter()
                    .map(|(e, hostname, username)| {
                        let ends = slices::get(c, e.slice_id)?
                            .map(|s| crate::ops::term::ends_at(c, &s))
                            .transpose()?
                            .flatten();
                        Ok::<_, Error>(serde_json::json!({
                            "id": e.id, "slice_id": e.slice_id, "hostname": hostname,
                            "username": username, "reason": e.reason, "asked_at": e.asked_at,
                            "until_day": crate::ops::term::last_day(e.until),
                            "ends_day": ends.map(crate::ops::term::last_day),
                        }))
                    })
                    .collect::<Result<_, _>>()?;
                Ok::<_, Error>((
                    slices::waiting_requests(c, &course, age)?,
                    slices::waiting_count(c, &course, age)?,
                    slices::waiting_courses(c)?,
                    crate::nodes::list(c)?,
                    extensions,
                ))
            })
        })
        .await?;
    Page::new("staff/requests.html")
        .with("rows", &rows)
        .with("total", &total)
        .with("newest", &newest)
        .with("courses", &courses)
        .with("nodes", &nodes)
        .with("extensions", &extensions)
        .with("query", &q)
        .render(&state, &req, &viewer)
}

#[derive(Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    node: String,
}

#[post("/requests/{id}/approve")]
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
        .write(move |tx| slices::approve(tx, &staff, id, node, &ip))
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

#[post("/requests/{id}/deny")]
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
        .write(move |tx| slices::deny(tx, &staff, id, &reason, &ip))
        .await;
    done_or_refused(&state, "/staff/requests", result, |s| {
        format!("Denied slice {} ({}).", s.id, s.hostname)
    })
}

/// Approves every ticked request (`approve_ID=on`), in one transaction.
#[post("/requests/approve")]
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
        return Ok(crate::web::page::refused(
            &state,
            "/staff/requests",
            "Tick the requests to approve first.",
        ));
    }
    let (staff, ip) = (session.user.clone(), posted.viewer.ip.clone());
    approve_each(state, staff, ip, move |_| Ok(ids)).await
}

/// Approves the requests `which` names, in one transaction, each on the best node (one
/// decided meanwhile is passed over), and says how many.
async fn approve_each(
    state: State,
    staff: crate::ops::accounts::User,
    ip: String,
    which: impl FnOnce(&rusqlite::Transaction) -> crate::error::Result<Vec<i64>> + Send + 'static,
) -> Result<HttpResponse, WebError> {
    let n = state
        .run(move |db| {
            db.write(|tx| {
                let mut n = 0;
                for id in which(tx)? {
                    match slices::approve(tx, &staff, id, None, &ip) {
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

#[derive(Deserialize)]
pub struct ApproveAllForm {
    #[serde(default)]
    course: String,
    #[serde(default)]
    days: Option<u32>,
    /// The newest request the staff saw: none that came after is approved with the rest.
    /// (Every field has a default, so a form that lacks one is judged by who sent it first:
    /// a student gets 403 whatever the body.)
    #[serde(default)]
    up_to: i64,
}

/// Approves every request the filter matches, however many (the page lists the first 500),
/// in one transaction, each on the best node.
#[post("/requests/approve-all")]
async fn approve_all(
    state: State,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<ApproveAllForm>,
) -> Result<HttpResponse, WebError> {
    let (staff, ip) = (session.user.clone(), posted.viewer.ip.clone());
    let f = posted.form;
    if f.course.chars().count() > 100 {
        return Err(WebError::BadRequest(
            "A course has at most 100 characters.".into(),
        ));
    }
    let age = f.days.unwrap_or(0).min(3650) as i64 * 86400;
    approve_each(state, staff, ip, move |tx| {
        slices::waiting_ids(tx, &f.course, age, f.up_to)
    })
    .await
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    note: String,
}

/// Staff approve or deny a student's request for more time.
#[post("/extensions/{id}/{decision}")]
async fn decide_extension(
    state: State,
    StaffOnly(_, session): StaffOnly,
    path: web::Path<(i64, String)>,
    posted: Posted<DecideForm>,
) -> Result<HttpResponse, WebError> {
    let (id, decision) = path.into_inner();
    let approving = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(WebError::NotFound),
    };
    let (staff, ip, note) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        posted.form.note.clone(),
    );
    let result = state
        .write(move |tx| crate::ops::term::decide_extension(tx, &staff, id, approving, &note, &ip))
        .await;
    done_or_refused(&state, "/staff/requests", result, |s| {
        if approving {
            format!(
                "More time given to {}: it now ends on {}.",
                s.hostname,
                s.expires_at
                    .map(crate::ops::term::last_day)
                    .unwrap_or_default()
            )
        } else {
            format!("More time for {} denied.", s.hostname)
        }
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(decide_extension)
        .service(queue)
        .service(approve)
        .service(deny)
        .service(bulk_approve)
        .service(approve_all);
}
