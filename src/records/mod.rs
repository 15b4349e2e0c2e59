//! The tables: one file per table (or per small family of tables), the only place with SQL.
//! Each function is one statement or a few over one table, taking the caller's connection or
//! transaction, so a use case above (accounts, slices, jobs...) makes one transaction of
//! several. Records use only the bottom layer (`clock`, `error`, `domain`, `store`) and each
//! other; `tests/it/layers.rs` checks it, and `tests/it/records.rs` prepares every statement.

pub mod agent_log;
pub mod audit;
pub mod courses;
pub mod email_tokens;
pub mod exports;
pub mod gateway;
pub mod invites;
pub mod jobs;
pub mod moves;
pub mod nodes;
pub mod orphans;
pub mod outbox;
pub mod placement;
pub mod plans;
pub mod quotas;
pub mod rosters;
pub mod sessions;
pub mod slice_lists;
pub mod slices;
pub mod snapshots;
pub mod ssh_keys;
pub mod templates;
pub mod usage;
pub mod users;
