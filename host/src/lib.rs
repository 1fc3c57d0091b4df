//! shipgate: a deployment gate that evaluates WebAssembly policies over
//! deployment snapshots and answers allow, deny or rollback, with reasons.
//!
//! The `shipgate` binary is a thin front end over this library (see
//! `docs/ARCHITECTURE.md`): [`snapshot`] validates what a CD system sends,
//! [`gate`] reads the gate file, `modules` resolves policy modules (`registry` fetches those from OCI
//! registries),
//! [`runtime`] runs them in fresh sandboxes, [`evaluate`] combines them into
//! a [`decision::Evaluation`], `decision_log` records and replays
//! decisions, `report` prints them, `history` draws a rollout from its log, `authoring` is the policy author's
//! workflow (new, build, test), `sources` gathers evidence, `adapters`
//! speak each CD system's protocol, and `server` serves them over HTTP.
//!
//! What is public is what the benchmark and the tests drive directly: the
//! runtime, gates, snapshots, a prepared gate and its decision record.

mod adapters;
mod authoring;
pub mod builtins;
pub mod cli;
pub mod decision;
mod decision_log;
mod error;
pub mod evaluate;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
mod helpers;
mod history;
mod inspect;
mod modules;
mod registry;
mod replay;
mod report;
pub mod runtime;
mod server;
mod service;
pub mod snapshot;
mod sources;
mod text;

pub use error::{Error, exit};
pub use shipgate_policy::{Decision, Finding, Phase};

#[cfg(test)]
mod layers;
