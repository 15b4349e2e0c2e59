//! The gateway: what the master writes for each user with a live slice (login shell, keys,
//! hop key, RewriteMap line), kept right by reconciliation.
//!
//! `local` drives the embedded default target (files under the data folder) through the real
//! job loop with simulated agents. `real` (a system test) uses a real sshd on loopback as the
//! gateway, real LXC slices and a real Apache with the generated map.

#[path = "../jobs/fleet.rs"]
mod fleet;
#[path = "../common/gateway_lab.rs"]
mod gateway_lab;
mod local;
#[path = "../common/lxc_node.rs"]
mod lxc_node;
#[path = "../common/netns.rs"]
mod netns;
mod real;
#[path = "../common/system.rs"]
mod system;
