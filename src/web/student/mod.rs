//! A logged-in user's own pages: the dashboard, requests and slices, SSH keys, the account.

mod account;
mod dashboard;
mod keys;
mod terminal;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dashboard::routes)
        .configure(keys::routes)
        .configure(terminal::routes)
        .configure(account::routes);
}
