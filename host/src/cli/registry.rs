//! Commands that talk to an OCI registry: `push`, `pull` and `sign`.

use std::io::Read;
use std::path::PathBuf;

use super::{print, runtime};
use crate::error::{Error, exit};
use crate::inspect;
use crate::modules::ModuleRef;
use crate::registry::{self, Reference};

/// How to reach a registry.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct RegistryArgs {
    /// Reach this registry (`host:port`) over plain HTTP; loopback
    /// registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Log in with this user (the password from standard input); default:
    /// the Docker config's credentials for the registry.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
}

impl RegistryArgs {
    fn options(&self) -> Result<registry::ClientOptions, Error> {
        let password = if self.password_stdin {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| {
                    Error::Internal(anyhow::Error::new(e).context("reading the password"))
                })?;
            Some(password.trim_end_matches(['\r', '\n']).to_string())
        } else {
            None
        };
        Ok(registry::ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            username: self.username.clone(),
            password,
            docker_config: None,
        })
    }
}

fn reference(text: &str) -> Result<Reference, Error> {
    Reference::parse(text).map_err(Error::Usage)
}

#[derive(Debug, clap::Args)]
pub(super) struct PushArgs {
    /// The module: a .wasm policy component.
    module: PathBuf,
    /// Where: oci://REGISTRY/REPOSITORY:TAG.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl PushArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let target = reference(&self.reference)?;
        if target.tag.is_none() || target.digest.is_some() {
            return Err(Error::Usage(format!(
                "{target}: push to a tag (oci://REGISTRY/REPOSITORY:TAG); the digest is the \
                 registry's to say"
            )));
        }
        let label = self.module.display().to_string();
        let created = source_date_epoch()?;
        // Only a policy of this contract is published.
        let inspection = inspect::inspect(&runtime()?, &ModuleRef::file(self.module.clone()))?;
        let bytes = std::fs::read(&self.module).map_err(|e| Error::reading(&self.module, e))?;
        // What is pushed is what was checked.
        if registry::digest(&bytes) != inspection.sha256 {
            return Err(Error::InvalidInput(format!(
                "{label}: the file changed while it was being checked"
            )));
        }
        let title = self.module.file_name().map_or_else(
            || "policy.wasm".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let world = registry::ComponentWorld {
            imports: inspection.imports.clone(),
            exports: inspection.exports.clone(),
        };
        let options = self.registry.options()?;
        let pinned = registry::push(&options, &bytes, &title, &world, created, &target)?;
        print(&format!(
            "pushed {} {} ({} bytes, sha256 {})\n{pinned}\n",
            inspection.name, inspection.version, inspection.size, inspection.sha256
        ));
        Ok(exit::ALLOW)
    }
}

/// The artifact config's `created`: `SOURCE_DATE_EPOCH` when set and not
/// empty (the reproducible-builds convention: seconds since the epoch, up
/// to the year 9999 that RFC 3339 can write), else the epoch itself, so the
/// same file under the same name pushes to the same digest.
fn source_date_epoch() -> Result<jiff::Timestamp, Error> {
    let text = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(jiff::Timestamp::UNIX_EPOCH);
    }
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|seconds| (0..=253_402_300_799).contains(seconds))
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a time: give whole seconds since \
                 1970-01-01T00:00:00Z, at most 253402300799 (9999-12-31)"
            ))
        })
}

#[derive(Debug, clap::Args)]
pub(super) struct PullArgs {
    /// The module: oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST.
    reference: String,
    /// The module store (default: $SHIPGATE_STORE, else
    /// ~/.local/share/shipgate/store).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl PullArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let source = reference(&self.reference)?;
        let mut remote = registry::Remote::from_env();
        remote.client = self.registry.options()?;
        if let Some(store) = &self.store {
            remote.store = Some(store.clone());
        }
        let fetched = registry::pull(&remote, &source, crate::modules::DEFAULT_MAX_MODULE_BYTES)?;
        let store = remote
            .store_root()
            .map_or_else(String::new, |s| s.display().to_string());
        print(&format!(
            "pulled {}\nmodule sha256 {} ({} bytes) into {store}\n",
            fetched.reference,
            fetched.module_hex,
            fetched.bytes.len()
        ));
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct SignArgs {
    /// The signing key: an ECDSA P-256 private key, PKCS#8 PEM.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The module: oci://REGISTRY/REPOSITORY@sha256:DIGEST.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl SignArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let target = reference(&self.reference)?;
        if target.digest.is_none() {
            return Err(Error::Usage(format!(
                "{target}: sign a module by digest (oci://REGISTRY/REPOSITORY@sha256:DIGEST): a \
                 tag can move"
            )));
        }
        let text = std::fs::read_to_string(&self.key).map_err(|e| Error::reading(&self.key, e))?;
        let key = registry::SigningKey::from_pem(&text)
            .map_err(|why| Error::InvalidInput(format!("{}: {why}", self.key.display())))?;
        registry::sign(&self.registry.options()?, &target, &key)?;
        print(&format!("signed {target} with key {}\n", key.fingerprint()));
        Ok(exit::ALLOW)
    }
}
