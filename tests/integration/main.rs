//! The integration tests: one binary (one link), the real server on port 0.

// Building CSV fixtures line by line reads best with `push_str(&format!(..))`.
#![allow(clippy::format_push_string)]

mod access;
mod api;
mod cluster;
mod cluster_snapshots;
mod crash;
mod demo;
mod docs;
mod exports;
mod haproxy;
mod hardening;
mod helpers;
mod import;
mod officials;
mod openapi;
mod retention;
mod schemas;
mod snapshot_kill;
mod status_cache;
mod store;
