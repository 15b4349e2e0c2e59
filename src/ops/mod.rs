//! The use cases: what people and jobs do, each one transaction over `records` (and the
//! outbox, through `mail`). The web pages, the command line and the job kinds call these;
//! none of them writes SQL.

pub mod accounts;
pub mod archives;
pub mod nodes;
pub mod placement;
pub mod quotas;
pub mod rosters;
pub mod slices;
pub mod snapshots;
pub mod term;
pub mod usage;
