//! The policy author's workflow: `shipgate new` scaffolds a policy crate,
//! `shipgate build` builds and checks its component, and `shipgate test`
//! runs fixture cases through the real runtime.

mod builder;
mod fixture;
mod new;
mod results;
mod runner;

pub(crate) use builder::{Built, Outcome as BuildOutcome, build};
pub(crate) use fixture::parse as parse_fixture;
pub(crate) use new::{NewPolicy, create};
pub(crate) use results::{TestFormat, render as render_test_run};
pub(crate) use runner::{Setup as TestSetup, run as run_tests};
