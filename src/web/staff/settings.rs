//! The settings in force (`/staff/settings`), read-only: the configuration always wins.

use crate::web::error::WebError;
use crate::web::extract::session::StaffOnly;
use crate::web::page::Page;
use crate::web::State;
use actix_web::{get, web, HttpRequest, HttpResponse};

#[get("/settings")]
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
    cfg.service(settings_page);
}
