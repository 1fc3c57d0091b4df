//! What the binary says about itself: shell completions and the manual.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, print, writing};
use crate::error::{Error, exit};

#[derive(Debug, clap::Args)]
pub(super) struct CompletionsArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

impl CompletionsArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "shipgate", &mut script);
        print(&String::from_utf8_lossy(&script));
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ManArgs {
    /// Write shipgate.1, shipgate-eval.1, ... into this directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl ManArgs {
    /// The manual: the top page on stdout, or every command's page into
    /// `--dir`.
    pub(super) fn execute(&self) -> Result<i32, Error> {
        match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| writing(dir, e))?;
                clap_mangen::generate_to(Cli::command(), dir).map_err(|e| writing(dir, e))?;
            }
            None => {
                let mut page = Vec::new();
                clap_mangen::Man::new(Cli::command())
                    .render(&mut page)
                    .map_err(|e| writing(Path::new("<stdout>"), e))?;
                print(&String::from_utf8_lossy(&page));
            }
        }
        Ok(exit::ALLOW)
    }
}
