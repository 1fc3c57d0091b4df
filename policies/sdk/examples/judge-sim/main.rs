//! `judge-sim`: the false-rollback rate and the power of Kayenta's judge
//! and the sequential judge, side by side, on the same simulated canaries
//! (docs/JUDGEMENT.md shows a run):
//!
//! ```text
//! cargo run --release -p shipgate-policy --example judge-sim -- --runs 2000
//! ```

mod sim;

use sim::{Scenario, Setup, simulate};

fn main() {
    let mut runs = 2000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<usize>())) {
            ("--runs", Some(Ok(n))) if n > 0 => runs = n,
            _ => {
                eprintln!("usage: judge-sim [--runs N]");
                std::process::exit(64);
            }
        }
    }
    println!(
        "{runs} runs a row, 60 points a cohort, alpha 0.05, a look at each of equal growing windows"
    );
    println!();
    println!(
        "| data | looks | shift (σ) | Kayenta: failed | Kayenta: median look | sequential: failed | sequential: median look |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for scenario in Scenario::ALL {
        for (looks, shift) in [(1, 0.0), (6, 0.0), (60, 0.0), (6, 1.0)] {
            let result = simulate(&Setup {
                scenario,
                points: 60,
                looks,
                runs,
                shift,
                alpha: 0.05,
                seed: 7 + looks as u64,
            });
            let look = |l: Option<usize>| l.map_or("–".to_string(), |l| l.to_string());
            println!(
                "| {} | {looks} | {shift} | {:.3} | {} | {:.3} | {} |",
                scenario.name(),
                result.kayenta.failed,
                look(result.kayenta.median_look),
                result.sequential.failed,
                look(result.sequential.median_look),
            );
        }
    }
}
