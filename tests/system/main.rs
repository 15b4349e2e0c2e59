//! The system tests: real host parts, driven as people and operators use them. They run when
//! `TEST_SLICES_SYSTEM=1` (the README's test command sets it after installing what they
//! need), one at a time (they share this machine's bridges, accounts and CPU).
//!
//! - `lxc`: the agent with the real `lxc` driver, and its network policy in a namespace.
//! - `gateway`: a real sshd and Apache as the gateway into real LXC slices.
//! - `gateway_helper`: the helper run by its dedicated account with hostile input.
//! - `browser`: the whole flow in headless Chromium.
//! - `pages`: every page at 1280 and 390 px: accessibility (axe-core), console, phone width.
//! - `whole`: the multi-host system, each host a network namespace.
//! - `serve_lxc`: `slices serve --driver lxc` on one machine, from sign-up to ssh.
//! - `ssh_gateway`: the built-in SSH gateway in front of real LXC slices, with OpenSSH.
//! - `ldap`: log-in through a real OpenLDAP slapd (StartTLS, groups, a disabled account).
//! - `oidc`: single sign-on through a real OpenID provider (oidc-provider on Node), in Chromium
//!   and as an attacker would try it (forged state, replayed code, tampered ID tokens).
//! - `load`: floods on the master's password forms (alone: they take both cores).

#[path = "../common/mod.rs"]
mod common;

use common::{fleet, gateway_lab, http, lxc_node, netns, seed, serve, smtp, system, webdriver};

mod browser;
mod gateway;
mod gateway_helper;
mod ldap;
mod load;
mod lxc;
mod oidc;
mod pages;
mod serve_lxc;
mod ssh_gateway;
mod whole;
