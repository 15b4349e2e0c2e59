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
    #[serde(default)]
    kind: String,
    #[serde(default)]
    page: Option<u64>,
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
    let offset = super::render::Pager::offset_for(q.page, PER_PAGE);
    let (rows, total) = state
        .ctx
        .db
        .run(move |db| {
            db.read(|c| queue::page(c, filter.as_deref(), kind.as_deref(), offset, PER_PAGE))
        })
        .await?;
    let pager = super::render::Pager::new(q.page, PER_PAGE, total);
    let link =
        serde_urlencoded::to_string([("state", &q.state), ("kind", &q.kind)]).unwrap_or_default();
    Page::new("staff/jobs.html")
        .with("jobs", &rows)
        .with("query", &q)
        .with("states", &STATES)
        .with("kinds", &kinds)
        .with("pager", &pager)
        .with("link", &link)
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
                    let slices = crate::records::slices::live_on_node(c, n.id)?;
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
                    crate::ops::accounts::audit::record(
                        tx,
                        crate::ops::accounts::audit::Event::NodeChanged,
                        &crate::ops::accounts::Actor {
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

#[derive(Deserialize, Serialize, Default)]
pub struct NodeForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
}

async fn node_form(
    state: &State,
    req: &HttpRequest,
    viewer: &super::session::Viewer,
    form: &NodeForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let mut page = Page::new("staff/node_new.html").with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/staff/nodes/new")]
async fn new_node(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    node_form(&state, &req, &viewer, &NodeForm::default(), None).await
}

/// Registers a node and shows, once, the commands that enroll its agent: its certificate and
/// key are made here and never stored on the master.
#[post("/staff/nodes/new")]
async fn add_node(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<NodeForm>,
) -> Result<HttpResponse, WebError> {
    use crate::domain::{NodeAddress, NodeName};
    let Posted { viewer, form } = posted;
    let (name, address) = (
        form.name.trim().to_string(),
        form.address.trim().to_string(),
    );
    let (data, ip, actor) = (
        state.ctx.config.data.clone(),
        viewer.ip.clone(),
        session.user.id,
    );
    let result = state
        .ctx
        .db
        .run(move |db| {
            let mut errors = Vec::new();
            let name = NodeName::parse(&name).map_err(|e| errors.push(e)).ok();
            let address = NodeAddress::parse(&address)
                .map_err(|e| errors.push(e))
                .ok();
            let (Some(name), Some(address)) = (name, address) else {
                return Err(Error::Invalid(errors));
            };
            let node = db.write(|tx| {
                let node = crate::nodes::add(tx, &name, &address)?;
                crate::ops::accounts::audit::record(
                    tx,
                    crate::ops::accounts::audit::Event::NodeChanged,
                    &crate::ops::accounts::Actor {
                        user_id: Some(actor),
                        ip: &ip,
                    },
                    name.as_str(),
                    "added",
                )?;
                Ok::<_, Error>(node)
            })?;
            let ca = crate::slave_link::pki::Ca::open_or_create(&data.join("ca"))?;
            let id = ca.issue_node(&name)?;
            let port = address
                .as_str()
                .rsplit(':')
                .next()
                .unwrap_or("7070")
                .to_string();
            let listen: std::net::SocketAddr = format!("0.0.0.0:{port}")
                .parse()
                .map_err(|e: std::net::AddrParseError| Error::Internal(e.into()))?;
            let toml = crate::agent::AgentConfig::sample(
                &name,
                listen,
                std::path::Path::new("/etc/slices-agent"),
            );
            Ok(serde_json::json!({
                "node": node,
                "ca": ca.cert_pem(),
                "cert": id.cert_pem,
                "key": id.key_pem,
                "toml": toml,
            }))
        })
        .await;
    match result {
        Ok(bundle) => {
            let mut resp = Page::new("staff/node_added.html")
                .with("b", &bundle)
                .render(&state, &req, &viewer)?;
            // The page holds a private key: never cached.
            resp.headers_mut().insert(
                actix_web::http::header::CACHE_CONTROL,
                actix_web::http::header::HeaderValue::from_static("no-store"),
            );
            Ok(resp)
        }
        Err(e @ Error::Invalid(_)) => node_form(&state, &req, &viewer, &form, Some(&e)).await,
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(new_node)
        .service(add_node)
        .service(jobs)
        .service(job)
        .service(job_action)
        .service(nodes)
        .service(node_action);
}
