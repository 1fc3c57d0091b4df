//! The `shipgate` binary. Everything, including the mapping of outcomes to
//! exit codes, lives in the library (`shipgate::cli`).

fn main() {
    std::process::exit(shipgate::cli::main());
}
