//! Pages anyone may reach, logged in or not.

mod assets;
mod auth;
mod email;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(assets::routes)
        .configure(auth::routes)
        .configure(email::routes);
}
