//! The gateway (`/staff/gateway`): the last runs, a drift check, apply now, accepting the
//! host key.

use crate::error::Error;
use crate::ops::accounts::{audit, Actor, Event};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{StaffOnly, Viewer};
use crate::web::page::{done_or_refused, see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// The gateway: where it is, the last applies, and (on demand) what differs now.
async fn gateway_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    plan: Option<Result<crate::gateway::Plan, String>>,
    offered: Option<String>,
) -> Result<HttpResponse, WebError> {
    let runs = state.read(move |c| crate::gateway::runs(c, 30)).await?;
    // The routes the gateway needs: each node's subnet through that node.
    let routes: Vec<serde_json::Value> = state
        .read(crate::ops::nodes::routes)
        .await?
        .into_iter()
        .map(|(node, subnet, host)| serde_json::json!({"node": node, "subnet": subnet.to_string(), "host": host}))
        .collect();
    let settings = crate::gateway::Settings::load(&state.ctx.config, &state.ctx.db)
        .map_err(|e| WebError::Internal(anyhow::anyhow!("{e}")))?;
    let mut page = Page::new("staff/gateway.html")
        .with("target", &settings.describe())
        .with("pinned", &settings.host_key.is_some())
        .with("pinned_by", &settings.host_key_source)
        .with("offered", &offered)
        .with(
            "local",
            &matches!(settings.target, crate::gateway::TargetSpec::Local(_)),
        )
        .with("runs", &runs)
        .with("routes", &routes);
    match plan {
        Some(Ok(p)) => {
            let lines: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
            page = page
                .with("checked", &true)
                .with("changes", &lines)
                .with("unmanaged", &p.unmanaged);
        }
        Some(Err(e)) => page = page.with("checked", &true).with("check_error", &e),
        None => {}
    }
    page.render(state, req, viewer)
}

#[get("/gateway")]
async fn gateway_show(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    gateway_page(&state, &req, &viewer, None, None).await
}

#[post("/gateway/check")]
async fn gateway_check(
    state: State,
    req: HttpRequest,
    _staff: StaffOnly,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let config = state.ctx.config.clone();
    let (plan, offered) = state
        .run(move |db| {
            let settings = crate::gateway::Settings::load(&config, db);
            // Not pinned yet: show the key the gateway offers, for staff to compare and accept.
            let offered = match &settings {
                Ok(s)
                    if s.host_key.is_none()
                        && matches!(s.target, crate::gateway::TargetSpec::Ssh { .. }) =>
                {
                    crate::gateway::offered_host_key(s).ok()
                }
                _ => None,
            };
            let plan = settings
                .map(crate::gateway::Gateway::new)
                .and_then(|g| g.plan(db, &crate::gateway::Scope::All))
                .map_err(|e| format!("{e:#}"));
            Ok::<_, Error>((plan, offered))
        })
        .await?;
    gateway_page(&state, &req, &posted.viewer, Some(plan), offered).await
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    fingerprint: String,
}

/// Staff accept the gateway's host key once, when the configuration pins none. The key must
/// be the one the gateway offers right now.
#[post("/gateway/accept")]
async fn gateway_accept(
    state: State,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<AcceptForm>,
) -> Result<HttpResponse, WebError> {
    let config = state.ctx.config.clone();
    let (fingerprint, by, ip) = (
        posted.form.fingerprint.trim().to_string(),
        session.user.id,
        posted.viewer.ip.clone(),
    );
    let result = state
        .run(move |db| {
            let settings = crate::gateway::Settings::from_config(&config)?;
            if settings.host_key.is_some() {
                return Err(Error::Forbidden(
                    "The configuration pins the gateway's host key: change it there.".into(),
                ));
            }
            let offered = crate::gateway::offered_host_key(&settings)
                .map_err(|e| Error::Forbidden(format!("The gateway could not be asked: {e:#}")))?;
            if offered != fingerprint {
                return Err(Error::Forbidden(format!(
                    "The gateway now offers {offered}, not the key you accepted: check again."
                )));
            }
            db.write(|tx| {
                crate::gateway::accept_host_key(tx, &fingerprint, by)?;
                audit::record(
                    tx,
                    Event::GatewayChanged,
                    &Actor {
                        user_id: Some(by),
                        ip: &ip,
                    },
                    crate::records::audit::Subject::Gateway,
                    &format!("host key {fingerprint} accepted"),
                )
            })
        })
        .await;
    done_or_refused(&state, "/staff/gateway", result, |()| {
        "The gateway's host key is pinned. The master's next apply uses it.".to_string()
    })
}

#[post("/gateway/apply")]
async fn gateway_apply(
    state: State,
    _staff: StaffOnly,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let queued = state
        .write(move |tx| crate::jobs::enqueue_gateway(tx, None))
        .await?;
    let notice = if queued.is_some() {
        "A full apply is queued; its result appears below within seconds."
    } else {
        "A full apply is already waiting to run."
    };
    Ok(see_other(&state, "/staff/gateway", Some(notice)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(gateway_show)
        .service(gateway_check)
        .service(gateway_accept)
        .service(gateway_apply);
}
