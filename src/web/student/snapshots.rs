//! A slice's snapshots (`/slices/ID/snapshots`): its owner or staff take one (with a note),
//! restore one (the slice's name typed: files written since are lost) or delete one.

use crate::error::Error;
use crate::ops::snapshots;
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::LoggedIn;
use crate::web::page::{refused, see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

#[get("/slices/{id}/snapshots")]
async fn page(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (id, user) = (id.into_inner(), session.user.clone());
    let v = state.read(move |c| snapshots::view(c, &user, id)).await?;
    let shown: Vec<serde_json::Value> = v
        .snapshots
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "note": s.note, "state": s.state, "error": s.error,
                "size": s.size.map(crate::domain::size_text),
                "taken": s.taken_at.map(crate::clock::format_time),
            })
        })
        .collect();
    Page::new("snapshots.html")
        .with("v", &v)
        .with("shown", &shown)
        .render(&state, &req, &viewer)
}

#[derive(Deserialize)]
pub struct TakeForm {
    #[serde(default)]
    note: String,
}

#[post("/slices/{id}/snapshots")]
async fn take(
    state: State,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
    posted: Posted<TakeForm>,
) -> Result<HttpResponse, WebError> {
    let (id, user, note) = (id.into_inner(), session.user.clone(), posted.form.note);
    let to = format!("/slices/{id}/snapshots");
    let result = state
        .run(move |db| db.write(|tx| snapshots::take(tx, &user, id, &note, crate::store::now())))
        .await;
    answer(
        &state,
        &to,
        result.map(|name| format!("Taking snapshot {name}; this page shows when it is done.")),
    )
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    confirm: String,
}

#[post("/slices/{id}/snapshots/{name}/{action}")]
async fn act(
    state: State,
    LoggedIn(_, session): LoggedIn,
    path: web::Path<(i64, String, String)>,
    posted: Posted<ActForm>,
) -> Result<HttpResponse, WebError> {
    let (id, name, action) = path.into_inner();
    let user = session.user.clone();
    let to = format!("/slices/{id}/snapshots");
    let confirm = posted.form.confirm;
    let n = name.clone();
    let result = match action.as_str() {
        "restore" => state
            .run(move |db| db.write(|tx| snapshots::restore(tx, &user, id, &n, &confirm)))
            .await
            .map(|()| format!("Putting its disk back as snapshot {name} has it; this page shows when it is done.")),
        "delete" => state
            .run(move |db| db.write(|tx| snapshots::delete(tx, &user, id, &n)))
            .await
            .map(|()| format!("Deleting snapshot {name}.")),
        _ => return Err(WebError::NotFound),
    };
    answer(&state, &to, result)
}

fn answer(
    state: &State,
    to: &str,
    result: Result<String, Error>,
) -> Result<HttpResponse, WebError> {
    match result {
        Ok(notice) => Ok(see_other(state, to, Some(&notice))),
        Err(Error::Forbidden(why)) => Ok(refused(state, to, &why)),
        Err(Error::Invalid(list)) => Ok(refused(
            state,
            to,
            &list.first().map(|e| e.message.clone()).unwrap_or_default(),
        )),
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(take).service(act);
}
