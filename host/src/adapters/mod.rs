//! Adapters: each CD system's way of asking for a decision and reading the
//! answer. The shell adapter serves `shipgate eval`; the others are HTTP
//! endpoints the server mounts.

pub mod argo;
pub mod flagger;
pub mod generic;
pub mod shell;
pub mod spinnaker;
