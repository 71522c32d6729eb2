//! The integration tests: one binary (one link), the real server on port 0.

mod api;
mod crash;
mod helpers;
mod openapi;
