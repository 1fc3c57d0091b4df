//! The `shipgate` binary: parse the command line, run, map the outcome to
//! an exit code (see `shipgate::exit`).

use clap::Parser;
use clap::error::ErrorKind;
use shipgate::cli::{self, Cli};
use shipgate::exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap exits 2 on usage errors, which a pipeline would read as
            // "rollback": usage errors are 64.
            let code = match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::ALLOW,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::USAGE,
                _ => exit::USAGE,
            };
            std::process::exit(code);
        }
    };
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shipgate: error: {error}");
            error.exit_code()
        }
    };
    std::process::exit(code);
}
