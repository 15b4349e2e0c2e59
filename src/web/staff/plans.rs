//! Plans and quotas (`/staff/plans`, `/staff/quotas`).

use crate::domain::{FieldError, Limits};
use crate::error::Error;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{StaffOnly, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

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
    /// Ticked: the plan's students have no root (no sudo) in their slices.
    #[serde(default)]
    no_root: Option<String>,
    #[serde(default)]
    snapshots: String,
}

impl PlanForm {
    fn check(&self) -> Result<(String, Limits, (bool, u32)), Error> {
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
        let snapshots = num("snapshots", &self.snapshots, Some(3));
        if snapshots > 20 {
            errors.push(FieldError::new("snapshots", "At most 20."));
        }
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
        Ok((
            name.to_string(),
            limits,
            (self.no_root.is_none(), snapshots),
        ))
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
    let rules = state.read(crate::ops::quotas::rules).await?;
    // The form starts from the default quota's figure, not a number of its own.
    let default_max = rules
        .iter()
        .find(|r| r.scope == "default")
        .map(|r| r.max_slices)
        .unwrap_or(1);
    let mut page = Page::new("staff/plans.html")
        .with("plans", &plans)
        .with("rules", &rules)
        .with("default_max", &default_max)
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/plans")]
async fn plans_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    plans_page(&state, &req, &viewer, &PlanForm::default(), None).await
}

#[post("/plans")]
async fn add_plan(
    state: State,
    req: HttpRequest,
    _staff: StaffOnly,
    posted: Posted<PlanForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let checked = form.check();
    let result = match checked {
        Ok((name, l, root)) => {
            let n = name.clone();
            state
                .run(move |db| {
                    db.write(|tx| {
                        if crate::records::plans::name_taken(tx, &n)? {
                            return Err(
                                FieldError::new("name", "A plan with this name exists.").into()
                            );
                        }
                        crate::records::plans::insert(tx, &n, &l, root)?;
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

#[post("/plans/{id}/default")]
async fn default_plan(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    let name = state
        .write(move |tx| crate::records::plans::set_default(tx, id))
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

#[post("/quotas")]
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

#[post("/quotas/{id}/remove")]
async fn remove_quota(
    state: State,
    _staff: StaffOnly,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let id = id.into_inner();
    state
        .write(move |tx| crate::ops::quotas::remove(tx, id))
        .await?;
    Ok(see_other(
        &state,
        "/staff/plans",
        Some("Quota rule removed."),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(plans_list)
        .service(add_plan)
        .service(default_plan)
        .service(set_quota)
        .service(remove_quota);
}
