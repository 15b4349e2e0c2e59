//! (system test: next)
