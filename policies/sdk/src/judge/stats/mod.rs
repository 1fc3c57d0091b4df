//! The statistics the judges are built from, each checked against R in the
//! SDK's tests (`tests/judge_vs_r.rs`).

pub mod describe;
pub mod normal;
pub mod rank_sum;
mod sort;
pub mod zeroin;

pub use rank_sum::{Estimate, RankSum, RankSumError, rank_sum};
