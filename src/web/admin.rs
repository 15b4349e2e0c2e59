//! Staff: OS templates (register, which nodes have each, sync now), plans, the gateway (last
//! applies, drift, apply now) and the settings in force (read-only: they come from the
//! configuration, which the web interface never overrides).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::form::{NoFields, Posted};
use super::render::{done_or_refused, see_other, Page};
use super::session::{StaffOnly, Viewer};
use super::State;
use crate::domain::{FieldError, Limits, TemplateName};
use crate::error::Error;
use crate::jobs::JobKind;
use crate::ops::accounts::{audit, Actor, Event};

/// One template as staff see it: offered, file on the master, and which nodes have it.
#[derive(Serialize)]
struct TemplateRow {
    name: String,
    description: String,
    offered: bool,
    file: Option<crate::templates::TemplateInfo>,
    /// Nodes with this exact file, and nodes with another version of it.
    nodes_same: Vec<String>,
    nodes_other: Vec<String>,
}

fn template_rows(state: &State) -> crate::error::Result<Vec<TemplateRow>> {
    let offered = state.ctx.db.read(crate::ops::slices::template_choices)?;
    let files = state
        .os_templates
        .list()
        .map_err(|e| Error::Internal(e.into()))?;
    let nodes = state.ctx.db.read(crate::nodes::list)?;
    let mut names: Vec<String> = offered.iter().map(|t| t.name.clone()).collect();
    for f in &files {
        if !names.contains(&f.name.to_string()) {
            names.push(f.name.to_string());
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let file = files.iter().find(|f| f.name.as_str() == name).cloned();
            let (mut same, mut other) = (Vec::new(), Vec::new());
            for n in &nodes {
                let held = n
                    .info
                    .as_ref()
                    .and_then(|i| i.get("templates"))
                    .and_then(|t| t.as_array())
                    .and_then(|list| {
                        list.iter()
                            .find(|t| t.get("name").and_then(|v| v.as_str()) == Some(&name))
                            .cloned()
                    });
                if let Some(t) = held {
                    let sha = t.get("sha256").and_then(|v| v.as_str()).unwrap_or("");
                    match &file {
                        Some(f) if f.sha256.as_str() != sha => other.push(n.name.clone()),
                        _ => same.push(n.name.clone()),
                    }
                }
            }
            let o = offered.iter().find(|t| t.name == name);
            TemplateRow {
                description: o.map(|t| t.description.clone()).unwrap_or_default(),
                offered: o.is_some(),
                name,
                file,
                nodes_same: same,
                nodes_other: other,
            }
        })
        .collect())
}

async fn templates_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    form: &TemplateForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let s = state.clone();
    let rows = web::block(move || template_rows(&s))
        .await
        .map_err(|e| WebError::Internal(anyhow::anyhow!("{e}")))??;
    let mut page = Page::new("staff/templates.html")
        .with("rows", &rows)
        .with("folder", &state.os_templates.dir().display().to_string())
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[derive(Deserialize, Serialize, Default)]
pub struct TemplateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    sha256: String,
}

#[get("/staff/templates")]
async fn templates_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    templates_page(&state, &req, &viewer, &TemplateForm::default(), None).await
}

#[post("/staff/templates")]
async fn add_template(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<TemplateForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let (s, f, ip, actor) = (
        state.clone(),
        TemplateForm {
            name: form.name.clone(),
            description: form.description.clone(),
            sha256: form.sha256.clone(),
        },
        viewer.ip.clone(),
        session.user.id,
    );
    let result = web::block(move || -> crate::error::Result<String> {
        let name = TemplateName::parse(f.name.trim())?;
        let description = crate::mail::one_line(&f.description);
        if description.chars().count() > 300 {
            return Err(FieldError::new("description", "At most 300 characters.").into());
        }
        let sha = f.sha256.trim().to_ascii_lowercase();
        let file = s
            .os_templates
            .info(&name)
            .map_err(|e| Error::Internal(e.into()))?;
        if !sha.is_empty() {
            let want = crate::templates::Sha256Hex::parse(&sha)?;
            match &file {
                None => {
                    return Err(FieldError::new(
                        "sha256",
                        format!("There is no {} on the master to check it against.", name.file_name()),
                    )
                    .into())
                }
                Some(f) if f.sha256 != want => {
                    return Err(FieldError::new(
                        "sha256",
                        format!(
                            "The file on the master has SHA-256 {}, not this: it is another file or a damaged copy.",
                            f.sha256.as_str()
                        ),
                    )
                    .into())
                }
                Some(_) => {}
            }
        }
        s.ctx.db.write(|tx| {
            crate::ops::slices::add_template(tx, &name, &description)?;
            audit::record(
                tx,
                Event::NodeChanged,
                &Actor {
                    user_id: Some(actor),
                    ip: &ip,
                },
                name.as_str(),
                "template offered",
            )
        })?;
        Ok(if file.is_some() {
            format!("{name} is offered to students. Sync it to the nodes below.")
        } else {
            format!(
                "{name} is offered, but its file is not on the master yet: put {} in the templates folder.",
                name.file_name()
            )
        })
    })
    .await
    .map_err(|e| WebError::Internal(anyhow::anyhow!("{e}")))?;
    match result {
        Ok(notice) => Ok(see_other(&state, "/staff/templates", Some(&notice))),
        Err(e @ Error::Invalid(_)) => templates_page(&state, &req, &viewer, &form, Some(&e)).await,
        Err(e) => Err(e.into()),
    }
}

#[post("/staff/templates/sync")]
async fn sync_templates(
    state: State,
    _staff: StaffOnly,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let queued = state
        .ctx
        .db
        .run(|db| {
            db.write(|tx| {
                let mut n = 0;
                for node in crate::nodes::list(tx)? {
                    if node.enabled
                        && crate::jobs::enqueue_for_node(
                            tx,
                            JobKind::TemplateSync,
                            node.id,
                            crate::store::now(),
                        )?
                        .is_some()
                    {
                        n += 1;
                    }
                }
                Ok::<_, Error>(n)
            })
        })
        .await?;
    let notice = if queued == 0 {
        "No sync was queued: there is no enabled node, or each has one waiting already.".to_string()
    } else {
        format!("A template sync is queued for {queued} node(s); follow it under Jobs.")
    };
    Ok(see_other(&state, "/staff/templates", Some(&notice)))
}

#[derive(Deserialize, Serialize, Default)]
pub struct PlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    memory_mb: String,
    #[serde(default)]
    memory_limit_mb: String,
    #[serde(default)]
    processes: String,
    #[serde(default)]
    disk_mb: String,
    #[serde(default)]
    cpu_shares: String,
}

impl PlanForm {
    fn check(&self) -> Result<(String, Limits), Error> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ' ')
        {
            errors.push(FieldError::new(
                "name",
                "A plan's name is 1 to 40 letters, digits, spaces, `-` or `_`.",
            ));
        }
        let mut num = |field: &'static str, raw: &str, empty_is: Option<u32>| -> u32 {
            match (raw.trim(), empty_is) {
                ("", Some(v)) => v,
                (t, _) => t.parse::<u32>().unwrap_or_else(|_| {
                    errors.push(FieldError::new(field, "A whole number."));
                    0
                }),
            }
        };
        let limits = Limits {
            memory_mb: num("memory_mb", &self.memory_mb, None),
            memory_limit_mb: num("memory_limit_mb", &self.memory_limit_mb, None),
            processes: num("processes", &self.processes, Some(240)),
            disk_mb: num("disk_mb", &self.disk_mb, Some(0)),
            cpu_shares: num("cpu_shares", &self.cpu_shares, Some(1024)),
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let limits = limits.check().map_err(|e| {
            // Name the field the rule is about.
            let field = [
                "memory_limit_mb",
                "memory_mb",
                "processes",
                "disk_mb",
                "cpu_shares",
            ]
            .into_iter()
            .find(|f| e.message.starts_with(f))
            .unwrap_or("memory_mb");
            Error::Invalid(vec![FieldError::new(field, e.message)])
        })?;
        Ok((name.to_string(), limits))
    }
}

async fn plans_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    form: &PlanForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let plans = state
        .ctx
        .db
        .run(|db| {
            db.read(|c| {
                let plans = crate::ops::slices::plan_choices(c)?;
                let mut out = Vec::new();
                for p in plans {
                    let live = crate::records::plans::live_slices(c, p.id)?;
                    out.push(serde_json::json!({"plan": p, "slices": live}));
                }
                Ok::<_, Error>(out)
            })
        })
        .await?;
    let rules = state
        .ctx
        .db
        .run(|db| db.read(crate::ops::quotas::rules))
        .await?;
    let mut page = Page::new("staff/plans.html")
        .with("plans", &plans)
        .with("rules", &rules)
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/staff/plans")]
async fn plans_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    plans_page(&state, &req, &viewer, &PlanForm::default(), None).await
}

#[post("/staff/plans")]
async fn add_plan(
    state: State,
    req: HttpRequest,
    _staff: StaffOnly,
    posted: Posted<PlanForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let checked = form.check();
    let result = match checked {
        Ok((name, l)) => {
            let n = name.clone();
            state
                .ctx
                .db
                .run(move |db| {
                    db.write(|tx| {
                        if crate::records::plans::name_taken(tx, &n)? {
                            return Err(
                                FieldError::new("name", "A plan with this name exists.").into()
                            );
                        }
                        crate::records::plans::insert(tx, &n, &l)?;
                        Ok::<_, Error>(())
                    })
                })
                .await
                .map(|_| name)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(name) => Ok(see_other(
            &state,
            "/staff/plans",
            Some(&format!("Plan {name} added: students can choose it now.")),
        )),
        Err(e @ Error::Invalid(_)) => plans_page(&state, &req, &viewer, &form, Some(&e)).await,
        Err(e) => Err(e.into()),
    }
}

#[post("/staff/plans/{id}/default")]
async fn default_plan(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let name = state
        .ctx
        .db
        .run(move |db| db.write(|tx| crate::records::plans::set_default(tx, id)))
        .await?
        .ok_or(WebError::NotFound)?;
    Ok(see_other(
        &state,
        "/staff/plans",
        Some(&format!("{name} is the plan a request starts with.")),
    ))
}

/// A quota rule from the form: scope, its target, the number of slices, the plans (checkboxes
/// named `plan_ID`).
#[derive(Deserialize)]
pub struct QuotaForm {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    course: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    max_slices: String,
    #[serde(flatten)]
    rest: std::collections::HashMap<String, String>,
}

#[post("/staff/quotas")]
async fn set_quota(
    state: State,
    req: HttpRequest,
    _staff: StaffOnly,
    posted: Posted<QuotaForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let plans: Vec<i64> = form
        .rest
        .keys()
        .filter_map(|k| k.strip_prefix("plan_")?.parse().ok())
        .collect();
    let max = form.max_slices.trim().parse::<i64>();
    let (scope, course, username) = (
        form.scope.clone(),
        form.course.clone(),
        form.username.clone(),
    );
    let result = match max {
        Err(_) => Err(Error::Invalid(vec![FieldError::new(
            "max_slices",
            "A whole number.",
        )])),
        Ok(max) => {
            state
                .ctx
                .db
                .run(move |db| {
                    db.write(|tx| {
                        crate::ops::quotas::set(tx, &scope, &course, &username, max, &plans)
                    })
                })
                .await
        }
    };
    match result {
        Ok(()) => Ok(see_other(
            &state,
            "/staff/plans",
            Some("Quota saved: it applies to new requests and approvals."),
        )),
        Err(e @ Error::Invalid(_)) => {
            plans_page(&state, &req, &viewer, &PlanForm::default(), Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/staff/quotas/{id}/remove")]
async fn remove_quota(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    state
        .ctx
        .db
        .run(move |db| db.write(|tx| crate::ops::quotas::remove(tx, id)))
        .await?;
    Ok(see_other(
        &state,
        "/staff/plans",
        Some("Quota rule removed."),
    ))
}

/// The gateway: where it is, the last applies, and (on demand) what differs now.
async fn gateway_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    plan: Option<Result<crate::gateway::Plan, String>>,
    offered: Option<String>,
) -> Result<HttpResponse, WebError> {
    let runs = state
        .ctx
        .db
        .run(|db| db.read(|c| crate::gateway::runs(c, 30)))
        .await?;
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
        .with("runs", &runs);
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

#[get("/staff/gateway")]
async fn gateway_show(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    gateway_page(&state, &req, &viewer, None, None).await
}

#[post("/staff/gateway/check")]
async fn gateway_check(
    state: State,
    req: HttpRequest,
    _staff: StaffOnly,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let config = state.ctx.config.clone();
    let (plan, offered) = state
        .ctx
        .db
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
#[post("/staff/gateway/accept")]
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
        .ctx
        .db
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
                    Event::NodeChanged,
                    &Actor {
                        user_id: Some(by),
                        ip: &ip,
                    },
                    "gateway",
                    &format!("host key {fingerprint} accepted"),
                )
            })
        })
        .await;
    done_or_refused(&state, "/staff/gateway", result, |()| {
        "The gateway's host key is pinned. The master's next apply uses it.".to_string()
    })
}

#[post("/staff/gateway/apply")]
async fn gateway_apply(
    state: State,
    _staff: StaffOnly,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let queued = state
        .ctx
        .db
        .run(|db| db.write(|tx| crate::jobs::enqueue_gateway(tx, None)))
        .await?;
    let notice = if queued.is_some() {
        "A full apply is queued; its result appears below within seconds."
    } else {
        "A full apply is already waiting to run."
    };
    Ok(see_other(&state, "/staff/gateway", Some(notice)))
}

#[get("/staff/settings")]
async fn settings_page(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    let all = state.ctx.config.effective();
    let docs: std::collections::BTreeMap<&str, String> = crate::config::Config::documented()
        .into_iter()
        .map(|(k, _, doc)| (k, doc.replace('\n', " ")))
        .collect();
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v, "doc": docs.get(k).cloned().unwrap_or_default()}))
        .collect();
    Page::new("staff/settings.html")
        .with("rows", &rows)
        .render(&state, &req, &viewer)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(templates_list)
        .service(add_template)
        .service(sync_templates)
        .service(plans_list)
        .service(add_plan)
        .service(default_plan)
        .service(set_quota)
        .service(remove_quota)
        .service(gateway_show)
        .service(gateway_check)
        .service(gateway_apply)
        .service(gateway_accept)
        .service(settings_page);
}
