//! A logged-in user's own pages: the dashboard, requests and slices, SSH keys, the account.

mod account;
mod archive;
mod dashboard;
mod keys;
mod reinstall;
mod snapshots;
mod term;
mod terminal;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Before the dashboard's `/slices/{id}/{action}`, which would take `extend` too.
    cfg.configure(term::routes)
        .configure(archive::routes)
        .configure(reinstall::routes)
        .configure(snapshots::routes)
        .configure(dashboard::routes)
        .configure(keys::routes)
        .configure(terminal::routes)
        .configure(account::routes);
}
