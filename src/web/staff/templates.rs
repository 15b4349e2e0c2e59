//! OS templates (`/staff/templates`): offer one, which nodes have each, sync now.

use crate::domain::{FieldError, TemplateName};
use crate::error::Error;
use crate::jobs::JobKind;
use crate::ops::accounts::{audit, Actor, Event};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{StaffOnly, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

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

#[get("/templates")]
async fn templates_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    templates_page(&state, &req, &viewer, &TemplateForm::default(), None).await
}

#[post("/templates")]
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
                Event::TemplateChanged,
                &Actor {
                    user_id: Some(actor),
                    ip: &ip,
                },
                crate::records::audit::Subject::Template(name.as_str()),
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

#[post("/templates/sync")]
async fn sync_templates(
    state: State,
    _staff: StaffOnly,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let queued = state
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

/// Staff stop offering a template: new requests cannot choose it; what exists is untouched.
#[post("/templates/{name}/withdraw")]
async fn withdraw_template(
    state: State,
    StaffOnly(_, session): StaffOnly,
    name: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let name = TemplateName::parse(&name).map_err(|_| WebError::NotFound)?;
    let (ip, actor) = (posted.viewer.ip.clone(), session.user.id);
    let n = name.clone();
    let withdrawn = state
        .run(move |db| {
            db.write(|tx| {
                let withdrawn = crate::records::templates::withdraw_template(tx, &n)?;
                if withdrawn {
                    audit::record(
                        tx,
                        Event::TemplateChanged,
                        &Actor {
                            user_id: Some(actor),
                            ip: &ip,
                        },
                        crate::records::audit::Subject::Template(n.as_str()),
                        "template withdrawn",
                    )?;
                }
                Ok::<_, Error>(withdrawn)
            })
        })
        .await?;
    if !withdrawn {
        return Err(WebError::NotFound);
    }
    Ok(see_other(
        &state,
        "/staff/templates",
        Some(&format!(
            "{name} is no longer offered. Slices made from it, and requests already made for it, are untouched; its file stays on the master and the nodes."
        )),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(templates_list)
        .service(add_template)
        .service(sync_templates)
        .service(withdraw_template);
}
