//! The gateway host: students `ssh gateway` and land in their slice; `NAME.<domain>` reaches
//! the web server in it. For every user with a live slice the gateway holds (the seed's
//! "Accessing Virtual Environments" and "Apache" sections):
//!
//! - a Unix account USER whose login shell is `USERS_DIR/USER.sh`, a script that runs
//!   `exec ssh -i KEY USER@PRIVATE_IP` and passes a command, scp and sftp through;
//! - a home `USERS_DIR/USER/` with `.ssh/authorized_keys` (the student's own keys, from the web
//!   interface), `.ssh/slice_ed25519` (the hop key: private half only here, owned by USER,
//!   0600; its public half goes into the slice through the agent) and `.ssh/known_hosts`;
//! - a line `NAME PRIVATE_IP` in Apache's RewriteMap, written atomically.
//!
//! The master keeps it right by reconciliation: the desired state comes from the database
//! ([`desired`]), the actual state is read from the target ([`Target::read`]), and only the
//! difference ([`Plan`]) is applied. Applying twice changes nothing. Targets: [`ssh::SshTarget`]
//! (a real host, over SSH with ssh2) and [`local::LocalTarget`] (the same files under the data
//! folder, no Unix accounts: the embedded default).

mod apply;
mod desired;
mod keys;
pub mod local;
mod model;
mod plan;
mod render;
mod settings;
pub mod ssh;

pub use apply::*;
pub use desired::*;
pub use keys::*;
pub use model::*;
pub use plan::*;
pub use settings::*;

pub use render::{apache_config, login_script, map_text, valid_label};
pub use ssh::{helper, offered_host_key, sshd_block, sudoers_line};
