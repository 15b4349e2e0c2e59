//! The job loop end to end: real SQLite, real agents (simulator driver) behind real mutual
//! TLS, the master's runner in-process or as the real `slices serve` process.

mod archive;
mod digest;
mod embedded;
mod moves;
mod provision;
mod reconcile;
mod restart;
mod rosters;
mod snapshots;
mod term;
mod usage;
mod web;
