//! The `shipgate` program, built beside the benchmark so `cli_cold` times
//! the real CLI (same library entry point as host/src/main.rs).

fn main() {
    std::process::exit(shipgate::cli::main());
}
