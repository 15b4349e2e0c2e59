//! A logged-in user's own pages: the dashboard, requests and slices, SSH keys, the account.

mod account;
mod dashboard;
mod keys;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dashboard::routes)
        .configure(keys::routes)
        .configure(account::routes);
}
