//! Reinstall a slice (`/slices/ID/reinstall`): made anew on its node from its template or
//! another offered one, its /home carried over unless the owner says not to. The owner or
//! staff, after typing the slice's name.

use crate::domain::{FieldError, TemplateName};
use crate::error::Error;
use crate::ops::slices;
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::{LoggedIn, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct ReinstallForm {
    #[serde(default)]
    template: String,
    /// The checkbox: present ("on") when /home is kept.
    #[serde(default)]
    keep_home: Option<String>,
    #[serde(default)]
    confirm: String,
}

async fn reinstall_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    id: i64,
    form: Option<&ReinstallForm>,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let (uid, staff) = viewer
        .user()
        .map(|u| (u.id, u.role.is_staff()))
        .unwrap_or((0, false));
    let found = state
        .read(move |c| {
            let Some(s) = slices::get(c, id)?.filter(|s| s.user_id == uid || staff) else {
                return Ok::<_, Error>(None);
            };
            Ok(Some((s, slices::template_choices(c)?)))
        })
        .await?;
    let (slice, templates) = found.ok_or(WebError::NotFound)?;
    let form = form.cloned().unwrap_or_else(|| ReinstallForm {
        template: slice.template.clone(),
        keep_home: Some("on".into()),
        confirm: String::new(),
    });
    let back = if slice.user_id == uid {
        "/".to_string()
    } else {
        format!("/staff/slices/{id}")
    };
    let mut page = Page::new("reinstall.html")
        .with("slice", &slice)
        .with("templates", &templates)
        .with(
            "can",
            &matches!(slice.state, slices::State::Running | slices::State::Stopped),
        )
        .with("back", &back)
        .with("form", &form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/slices/{id}/reinstall")]
async fn reinstall_form(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, _): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    reinstall_page(&state, &req, &viewer, id.into_inner(), None, None).await
}

#[post("/slices/{id}/reinstall")]
async fn reinstall(
    state: State,
    req: HttpRequest,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
    posted: Posted<ReinstallForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let (id, user, f) = (id.into_inner(), session.user.clone(), form.clone());
    let result = state
        .run(move |db| {
            db.write(|tx| {
                let s = slices::get(tx, id)?
                    .filter(|s| s.user_id == user.id || user.role.is_staff())
                    .ok_or(Error::NotFound("slice"))?;
                let template = TemplateName::parse(f.template.trim()).map_err(|_| {
                    FieldError::new("template", "Choose one of the offered templates.")
                })?;
                if f.confirm.trim() != s.hostname {
                    return Err(FieldError::new(
                        "confirm",
                        format!("Type the slice's name, {}, to reinstall it.", s.hostname),
                    )
                    .into());
                }
                let keep_home = f.keep_home.is_some();
                let target = slices::Target::Reinstall {
                    template: &template,
                    keep_home,
                };
                slices::begin_move(tx, Some(&user), id, target)
            })
        })
        .await;
    match result {
        Ok(s) => {
            let back = if s.user_id == session.user.id {
                "/".to_string()
            } else {
                format!("/staff/slices/{id}")
            };
            Ok(see_other(
                &state,
                &back,
                Some(&format!(
                    "{} is being reinstalled: follow it on its card.",
                    s.hostname
                )),
            ))
        }
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            reinstall_page(&state, &req, &viewer, id, Some(&form), Some(&e)).await
        }
        Err(Error::NotFound(_)) => Err(WebError::NotFound),
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(reinstall_form).service(reinstall);
}
