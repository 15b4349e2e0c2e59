//! The slave link: the seed's JSON commands between the master and the agent on each slave
//! host, one object per line over mutually authenticated TLS 1.3. See `docs/protocol.md`.

pub mod client;
pub mod frame;
pub mod pki;
pub mod protocol;
pub mod server;

pub use client::{AgentClient, LinkError};
pub use protocol::{code, refuses_raw_pieces, Command, EnvSpec, Refusal, Reply, Request};
pub use server::{Handler, ServerOptions};
