//! Every in-process test in one binary: the master over HTTP (`api`), the job loop (`jobs`),
//! the slave link (`link`), mail through a real SMTP server (`mail`), the gateway's local
//! target (`gateway_local`) and the layering of `src/` (`layers`). System tests that drive
//! real LXC, sshd, Apache, Chromium and network namespaces are the other binary, `system`.

#[path = "../common/mod.rs"]
mod common;

use common::{app, fleet, http, seed, serve, smtp, system};

mod api;
mod gateway_local;
mod jobs;
mod layers;
mod link;
mod lists;
mod mail;
mod nodes;
mod records;
