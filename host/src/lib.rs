//! shipgate: a deployment gate that evaluates WebAssembly policies over
//! deployment snapshots and answers allow, deny or rollback, with reasons.
//!
//! The `shipgate` binary is a thin front end over this library:
//! [`snapshot`] validates what a CD system sends, [`gate`] reads the gate
//! file, [`runtime`] runs policies in fresh sandboxes, [`evaluate`] combines
//! them into an [`verdict::Evaluation`], and [`adapters`] speak each CD
//! system's format.

pub mod adapters;
pub mod audit;
pub mod builtins;
pub mod cli;
pub mod error;
pub mod evaluate;
pub mod gate;
pub mod inspect;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod verdict;

pub use error::{Error, exit};
pub use shipgate_policy::{Decision, Finding, Phase};
