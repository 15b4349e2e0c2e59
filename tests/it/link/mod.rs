//! The slave link end to end: a real agent (simulator driver) behind real mutual TLS, and the
//! master's client. Also: who is refused, and what bad input gets.

pub(crate) mod helpers;

mod archives;
pub(crate) mod binaries;
mod flood;

mod props;
mod refusals;
mod round_trip;
mod templates;
mod vzctl;
