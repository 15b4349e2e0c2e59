//! A student asks for more time for a slice (`/slices/ID/extend`).

use crate::error::Error;
use crate::ops::slices;
use crate::ops::term;
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::{LoggedIn, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct ExtendForm {
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

async fn extend_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    id: i64,
    form: &ExtendForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let uid = viewer.user().map(|u| u.id).unwrap_or(0);
    let found = state
        .read(move |c| {
            let Some(s) = slices::get(c, id)?.filter(|s| s.user_id == uid) else {
                return Ok::<_, Error>(None);
            };
            let ends = term::ends_at(c, &s)?;
            let waiting = term::waiting_extension(c, id)?;
            Ok(Some((s, ends, waiting)))
        })
        .await?;
    let (slice, ends, waiting) = found.ok_or(WebError::NotFound)?;
    let mut page = Page::new("extend.html")
        .with("slice", &slice)
        .with("last_day", &ends.map(term::last_day))
        .with(
            "asked_until",
            &waiting.as_ref().map(|w| term::last_day(w.until)),
        )
        // A fortnight more, to start from.
        .with(
            "until",
            &if form.until.is_empty() {
                ends.map(|t| crate::clock::format_day(t + 13 * 86_400))
                    .unwrap_or_default()
            } else {
                form.until.clone()
            },
        )
        .with("grace_days", &state.ctx.site().grace_days)
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/slices/{id}/extend")]
async fn extend_form(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, _): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    extend_page(
        &state,
        &req,
        &viewer,
        id.into_inner(),
        &ExtendForm::default(),
        None,
    )
    .await
}

#[post("/slices/{id}/extend")]
async fn extend(
    state: State,
    req: HttpRequest,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
    posted: Posted<ExtendForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let (id, user, f) = (id.into_inner(), session.user.clone(), form.clone());
    let result = state
        .run(move |db| {
            db.write(|tx| {
                term::ask_extension(tx, &user, id, &f.until, &f.reason, crate::store::now())
            })
        })
        .await;
    match result {
        Ok(()) => Ok(see_other(
            &state,
            "/",
            Some("Your request for more time is in; the lab staff will decide, and you will get a mail."),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            extend_page(&state, &req, &viewer, id, &form, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(extend_form).service(extend);
}
