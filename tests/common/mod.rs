//! Helpers shared by the two test binaries (`it` and `system`), as ordinary modules.
#![allow(dead_code)]

/// The master's server on port 0 with its own database, and a cookie-keeping client.
pub mod app;
/// Nodes with simulated agents behind real mutual TLS, the runner, users and slices.
pub mod fleet;
/// The gateway host for system tests: a real sshd, Apache and the helper.
pub mod gateway_lab;
/// Forms and the shared HTTP client.
pub mod http;
/// An agent with the real `lxc` driver on a bridge of its own.
pub mod lxc_node;
/// Separate "hosts" as network namespaces.
pub mod netns;
/// The seed's own messages, as its table writes them, and what each must do.
pub mod seed;
/// The real `slices serve` binary on an empty folder.
pub mod serve;
/// A real SMTP server (aiosmtpd).
pub mod smtp;
/// Running host commands, skipping system tests unless asked, waiting.
pub mod system;
/// Headless Chromium through chromedriver.
pub mod webdriver;
