//! The policy author's workflow: `shipgate new` scaffolds a policy crate,
//! `shipgate build` builds and checks its component, and `shipgate test`
//! runs fixture cases through the real runtime.

mod builder;
mod fixture;
mod new;
mod runner;
mod sdk;

pub(crate) use builder::{Built, Outcome as BuildOutcome, build};
#[cfg(feature = "fuzzing")]
pub(crate) use fixture::parse as parse_fixture;
pub(crate) use new::{Created, NewPolicy, create};
pub(crate) use runner::{
    CaseResult, PolicyCoverage, Setup as TestSetup, TestRun, run as run_tests,
};
pub(crate) use sdk::SdkSource;
