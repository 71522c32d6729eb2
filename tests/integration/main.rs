//! The integration tests: one binary (one link), the real server on port 0.

// Building CSV fixtures line by line reads best with `push_str(&format!(..))`.
#![allow(clippy::format_push_string)]

mod api;
mod crash;
mod demo;
mod hardening;
mod helpers;
mod import;
mod openapi;
mod status_cache;
mod store;
