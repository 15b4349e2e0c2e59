//! End-to-end tests of the master: the real server on port 0 with its own SQLite file, driven
//! over HTTP by a cookie-keeping client, as a browser would.

mod accounts;
mod admin;
mod authz;
mod bad_files;
mod bad_input;
mod cli;
mod courses;
mod slice_pages;
mod staff;
mod store;
mod trace;
