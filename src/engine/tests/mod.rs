//! The engine's tests that span its files: every rule of docs/api.md's
//! "Sample-collection records", "Lab results", "Rounds", "Missing lists and
//! coverage", "Exemptions", "Status" and "Policy" sections (`rules`), and a
//! property test (`property`) driving the engine and a deliberately naive
//! reference model (`reference`) with the same random city and events.
//! `retention` covers what the window lets go of and archived rounds.
//! `support` drives the engine the way the store does: judge, log, apply.

mod property;
mod reference;
mod retention;
mod rules;
pub(super) mod support;
