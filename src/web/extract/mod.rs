//! What a handler takes from a request before it runs: the session and viewer
//! (`LoggedIn`, `StaffOnly`, `Viewer`) and checked forms (`Posted<T>`).

pub mod form;
pub mod session;
