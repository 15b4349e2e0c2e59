//! The staff pages, all under one `/staff` scope (every handler also takes `StaffOnly`):
//! requests, slices, jobs, nodes, users and the audit log, the outbox, templates, plans and
//! quotas, the gateway, the settings.

mod courses;
mod gateway;
mod jobs;
mod nodes;
mod outbox;
mod plans;
mod requests;
mod settings;
mod slices;
mod templates;
mod users;

use actix_web::web;

/// The staff routes, relative to `/staff`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(requests::routes)
        .configure(slices::routes)
        .configure(jobs::routes)
        .configure(nodes::routes)
        .configure(users::routes)
        .configure(outbox::routes)
        .configure(templates::routes)
        .configure(plans::routes)
        .configure(courses::routes)
        .configure(gateway::routes)
        .configure(settings::routes);
}
