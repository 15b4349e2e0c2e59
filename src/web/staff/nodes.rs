//! Nodes (`/staff/nodes`): health and capacity, drain and disable, adding one (the
//! enrolment commands shown once).

use crate::error::Error;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::StaffOnly;
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

#[get("/nodes")]
async fn nodes(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    let rows = state
        .run(|db| {
            db.read(|c| {
                let nodes = crate::nodes::list(c)?;
                let mut out = Vec::new();
                for n in nodes {
                    let slices = crate::records::slices::live_on_node(c, n.id)?;
                    out.push(serde_json::json!({ "node": n, "slices": slices }));
                }
                // What the reconcile found differing on the nodes, newest first.
                let (drift, _) = crate::ops::accounts::audit::list(
                    c,
                    &crate::ops::accounts::audit::Filter {
                        event: Some(crate::ops::accounts::audit::Event::Drift),
                        ..Default::default()
                    },
                    20,
                    0,
                )?;
                let orphans = crate::records::orphans::list(c)?;
                Ok::<_, Error>((out, drift, orphans))
            })
        })
        .await?;
    let (rows, drift, orphans) = rows;
    Page::new("staff/nodes.html")
        .with("rows", &rows)
        .with("drift", &drift)
        .with("orphans", &orphans)
        .with("now", &crate::store::now())
        .render(&state, &req, &viewer)
}

#[post("/nodes/{name}/{action}")]
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
                        crate::records::audit::Subject::Node(&n),
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

#[derive(Deserialize)]
pub struct Confirm {
    #[serde(default)]
    confirm: String,
}

/// Staff remove an orphan container (one no slice holds) from its node, having typed its id.
#[post("/nodes/{name}/orphans/{veid}/remove")]
async fn remove_orphan(
    state: State,
    StaffOnly(_, session): StaffOnly,
    path: web::Path<(String, i64)>,
    posted: Posted<Confirm>,
) -> Result<HttpResponse, WebError> {
    let (name, veid) = path.into_inner();
    let (user, ip, confirm) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        posted.form.confirm,
    );
    let n = name.clone();
    let result = state
        .write(move |tx| crate::ops::nodes::remove_orphan(tx, &user, &n, veid, &confirm, &ip))
        .await;
    crate::web::page::done_or_refused(&state, "/staff/nodes", result, |_| {
        format!("Container {veid} on {name} is being removed.")
    })
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
    viewer: &crate::web::extract::session::Viewer,
    form: &NodeForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let mut page = Page::new("staff/node_new.html").with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/nodes/new")]
async fn new_node(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    node_form(&state, &req, &viewer, &NodeForm::default(), None).await
}

/// Registers a node and shows, once, the commands that enroll its agent: its certificate and
/// key are made here and never stored on the master.
#[post("/nodes/new")]
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
    let (data, ip, actor, pool) = (
        state.ctx.config.data.clone(),
        viewer.ip.clone(),
        session.user.id,
        state.ctx.config.node_subnet_pool.clone(),
    );
    let result = state
        .run(move |db| {
            let mut errors = Vec::new();
            let name = NodeName::parse(&name).map_err(|e| errors.push(e)).ok();
            let address = NodeAddress::parse(&address)
                .map_err(|e| errors.push(e))
                .ok();
            let (Some(name), Some(address)) = (name, address) else {
                return Err(Error::Invalid(errors));
            };
            let pool = crate::domain::Subnet::parse(&pool).map_err(|e| Error::Invalid(vec![e]))?;
            let (node, given) = db.write(|tx| {
                let (node, given) = crate::ops::nodes::enrol(tx, &name, &address, None, &pool)?;
                crate::ops::accounts::audit::record(
                    tx,
                    crate::ops::accounts::audit::Event::NodeChanged,
                    &crate::ops::accounts::Actor {
                        user_id: Some(actor),
                        ip: &ip,
                    },
                    crate::records::audit::Subject::Node(name.as_str()),
                    "added",
                )?;
                Ok::<_, Error>((node, given))
            })?;
            let ca = crate::slave_link::pki::Ca::open_or_create(&data.join("ca"))?;
            let id = ca.issue_node(&name)?;
            let fp = id.fingerprint()?;
            let node_id = node.id;
            db.write(|tx| crate::records::nodes::set_cert(tx, node_id, &fp))?;
            let port = address
                .as_str()
                .rsplit(':')
                .next()
                .unwrap_or("7070")
                .to_string();
            let listen: std::net::SocketAddr = format!("0.0.0.0:{port}")
                .parse()
                .map_err(|e: std::net::AddrParseError| Error::Internal(e.into()))?;
            let net = crate::agent::NodeIfaces::new("slbr0", "eth0")
                .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            let toml = crate::agent::AgentConfig::sample(
                &name,
                listen,
                std::path::Path::new("/etc/slices-agent"),
                &given,
                &net,
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
    cfg.service(nodes)
        .service(node_action)
        .service(remove_orphan)
        .service(new_node)
        .service(add_node);
}
