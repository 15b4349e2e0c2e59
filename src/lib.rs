//! Slices: give every student their own Linux machine.
//!
//! The library holds all of the logic; `slices` (the master) and `slices-agent` (the daemon on
//! each slave host) are thin binaries over it. See `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod domain;
pub mod embedded;
pub mod error;
pub mod gateway;
pub mod jobs;
pub mod mail;
pub mod nodes;
pub mod ops;
pub mod records;
pub mod slave_link;
pub mod ssh_gateway;
pub mod store;
pub mod templates;
pub mod web;

// The use cases under the names they have always had.
pub use ops::{accounts, quotas, slices, term, usage};
