//! Policy modules in OCI registries: `shipgate push` publishes a module as
//! a Wasm artifact, a gate names it `oci://REGISTRY/REPOSITORY@sha256:…`,
//! and it is fetched once into a local content-addressed store, with its
//! cosign signatures, from which every load reads it (checked against its
//! digest each time). A leaf like `sources`: it uses nothing of the crate.

mod artifact;
mod client;
pub(crate) mod error;
mod reference;
mod signature;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use client::ClientOptions;
pub(crate) use error::RegistryError;
pub(crate) use reference::{Reference, SCHEME};
pub(crate) use signature::{PublicKey, SigningKey};

pub(crate) use artifact::ComponentWorld;
use artifact::{Descriptor, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES};
use client::Client;
use signature::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, Signed};
use store::{Kind, Store};
pub(crate) use store::{digest, read_at_most};

/// Where modules from registries come from and are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Remote {
    /// The store; `None` when no directory for one is known.
    pub(crate) store: Option<PathBuf>,
    pub(crate) client: ClientOptions,
    /// How long fetching one module or its signatures may take in all
    /// (`None`: [`MODULE_DEADLINE`]).
    pub(crate) deadline: Option<Duration>,
    /// The keys the server trusts (`serve --trust-key`): a gate's `verify`
    /// key must be one of them, when there are any.
    pub(crate) trusted: Vec<PublicKey>,
    /// Every module from a registry must be signed by a trusted key
    /// (`serve --require-signatures`).
    pub(crate) require_signed: bool,
}

/// A registry that accepts connections and never answers must not hold a
/// decision: fetching a module (or its signatures) gives up after this,
/// unless `$SHIPGATE_REGISTRY_TIMEOUT_SECONDS` says otherwise.
const MODULE_DEADLINE: Duration = Duration::from_secs(30);
const DEADLINE_ENV: &str = "SHIPGATE_REGISTRY_TIMEOUT_SECONDS";

/// A module read from the store.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    /// Hex sha256 of the module (the artifact's layer).
    pub(crate) module_hex: String,
    /// The reference, pinned to its manifest's digest.
    pub(crate) reference: Reference,
}

impl Remote {
    /// The default store (`$SHIPGATE_STORE`, `$XDG_DATA_HOME/shipgate/store`
    /// or `~/.local/share/shipgate/store`); plain HTTP for loopback registries
    /// and those in `$SHIPGATE_INSECURE_REGISTRIES` (comma-separated).
    pub(crate) fn from_env() -> Remote {
        let insecure = std::env::var("SHIPGATE_INSECURE_REGISTRIES").unwrap_or_default();
        Remote {
            store: store::default_root(),
            client: ClientOptions {
                insecure_registries: insecure
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect(),
                ..ClientOptions::default()
            },
            deadline: std::env::var(DEADLINE_ENV)
                .ok()
                .and_then(|seconds| seconds.trim().parse::<u64>().ok())
                .filter(|&seconds| seconds > 0)
                .map(Duration::from_secs),
            trusted: Vec::new(),
            require_signed: false,
        }
    }

    /// `future` (a fetch from `reference`'s registry) within the deadline;
    /// past it, an error naming the registry.
    fn within<T: Send>(
        &self,
        reference: &str,
        future: impl Future<Output = Result<T, RegistryError>> + Send,
    ) -> Result<T, RegistryError> {
        let deadline = self.deadline.unwrap_or(MODULE_DEADLINE);
        run(async {
            tokio::time::timeout(deadline, future)
                .await
                .unwrap_or_else(|_| {
                    Err(RegistryError::unreachable(format!(
                        "{reference}: the registry did not answer within {} s \
                     (${DEADLINE_ENV} sets the limit)",
                        deadline.as_secs()
                    )))
                })
        })?
    }

    pub(crate) fn store_root(&self) -> Option<&std::path::Path> {
        self.store.as_deref()
    }

    fn store(&self) -> Result<Store, RegistryError> {
        self.store
            .clone()
            .map(Store::new)
            .ok_or_else(|| RegistryError::local("no module store: set SHIPGATE_STORE or HOME"))
    }

    /// The module `reference` names, from the store; fetched into it first
    /// when absent. A tag without a digest is looked up at the registry
    /// every time. With the module in the store, no registry is asked: a
    /// store filled by `shipgate pull` serves where no registry is reachable.
    pub(crate) fn module(
        &self,
        reference: &Reference,
        max_bytes: u64,
    ) -> Result<Fetched, RegistryError> {
        let store = self.store()?;
        if let Some(hex) = &reference.digest
            && let Some(fetched) = from_store(&store, reference, hex, max_bytes)?
        {
            return Ok(fetched);
        }
        self.within(
            &reference.to_string(),
            fetch(&self.client, &store, reference, max_bytes),
        )
    }

    /// The module at an `https://` URL, pinned by its sha256: from the store
    /// when there, else downloaded (at most `max_bytes`), checked against the
    /// pin and stored.
    pub(crate) fn url_module(
        &self,
        url: &str,
        sha256: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let store = self.store()?;
        let pin = sha256.to_ascii_lowercase();
        if let Some(bytes) = store
            .get(Kind::Blob, &pin, max_bytes)
            .map_err(RegistryError::local)?
        {
            return Ok(bytes);
        }
        let client = Client::new(self.client.clone())?;
        let bytes = self.within(url, client.download(url, max_bytes))?;
        let actual = digest(&bytes);
        if actual != pin {
            return Err(format!("{url} has sha256 {actual}, but the gate pins {pin}").into());
        }
        store
            .put(Kind::Blob, &bytes)
            .map_err(RegistryError::local)?;
        Ok(bytes)
    }

    /// Checks that the module `reference` (pinned) is signed by one of
    /// `keys`: with the signatures in the store, else with the registry's,
    /// asked once (and stored for next time). Returns the signer's
    /// fingerprint.
    pub(crate) fn verify(
        &self,
        reference: &Reference,
        keys: &[PublicKey],
    ) -> Result<String, RegistryError> {
        let hex = reference
            .digest
            .as_deref()
            .ok_or_else(|| RegistryError::from("the reference has no digest".to_string()))?;
        let by_any = |signatures: &[Signed]| -> Result<String, String> {
            let mut why = "no key to verify with".to_string();
            for key in keys {
                match signature::verify(signatures, key, hex) {
                    Ok(fingerprint) => return Ok(fingerprint),
                    Err(error) => why = error,
                }
            }
            Err(why)
        };
        let store = self.store()?;
        let stored = stored_signatures(&store, hex);
        let verified = by_any(&stored);
        if let Ok(fingerprint) = verified {
            return Ok(fingerprint);
        }
        let fetched = self.within(
            &reference.to_string(),
            fetch_signatures(&self.client, &store, reference),
        );
        match fetched {
            Ok(pulled) => Ok(by_any(&pulled)?),
            Err(unreachable) => Err(RegistryError::new(
                unreachable.kind,
                format!(
                    "{}; and the registry could not be asked for newer signatures: {unreachable}",
                    verified.unwrap_err()
                ),
            )),
        }
    }
}

/// Publishes `module` (a component of `world`, its config `created` at
/// that time) at `reference` (which names a tag) and returns the reference
/// pinned to the manifest's digest.
pub(crate) fn push(
    options: &ClientOptions,
    module: &[u8],
    title: &str,
    world: &ComponentWorld,
    created: jiff::Timestamp,
    reference: &Reference,
) -> Result<Reference, RegistryError> {
    let tag = reference.tag.clone().ok_or_else(|| {
        RegistryError::from("push needs a tag: oci://REGISTRY/REPOSITORY:TAG".to_string())
    })?;
    let client = Client::new(options.clone())?;
    let (config, manifest) = artifact::wasm_artifact(module, title, world, created);
    run(async {
        client.push_blob(reference, module).await?;
        client.push_blob(reference, &config).await?;
        let hex = client.push_manifest(reference, &tag, &manifest).await?;
        Ok(reference.pinned(&hex))
    })?
}

/// Fetches a module and its signatures into the store (`shipgate pull`).
pub(crate) fn pull(
    remote: &Remote,
    reference: &Reference,
    max_bytes: u64,
) -> Result<Fetched, RegistryError> {
    let store = remote.store()?;
    run(async {
        let fetched = fetch(&remote.client, &store, reference, max_bytes).await?;
        fetch_signatures(&remote.client, &store, &fetched.reference).await?;
        Ok(fetched)
    })?
}

/// Signs the module `reference` (pinned) with `key`, in cosign's layout:
/// a layer added to the manifest tagged `sha256-<digest>.sig`.
pub(crate) fn sign(
    options: &ClientOptions,
    reference: &Reference,
    key: &SigningKey,
) -> Result<(), RegistryError> {
    let hex = reference.digest.clone().ok_or_else(|| {
        RegistryError::from("sign needs a digest: oci://REGISTRY/REPOSITORY@sha256:…".to_string())
    })?;
    let client = Client::new(options.clone())?;
    let payload = signature::payload(
        &format!("{}/{}", reference.registry, reference.repository),
        &hex,
    );
    let signed = key.sign(&payload).map_err(RegistryError::local)?;
    let tag = signature::signature_tag(&hex);
    run(async {
        if client.manifest(reference).await?.is_none() {
            return Err(RegistryError::not_found(format!(
                "{reference}: no such module in the registry"
            )));
        }
        let at_tag = signatures_at(reference, &hex);
        // Signatures already there are kept: cosign adds a layer too.
        let mut layers = match client.manifest(&at_tag).await? {
            Some((bytes, _)) => serde_json::from_slice::<artifact::Manifest>(&bytes)
                .map(|m| m.layers)
                .map_err(|e| format!("{at_tag}: not a signature manifest ({e}); left as it is"))?,
            None => Vec::new(),
        };
        let mut layer = Descriptor::of(SIMPLE_SIGNING_MEDIA_TYPE, &payload);
        layer
            .annotations
            .insert(SIGNATURE_ANNOTATION.into(), signed.signature.clone());
        layers.push(layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
        }))
        .expect("JSON");
        let manifest = artifact::Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config: Descriptor::of("application/vnd.oci.image.config.v1+json", &config),
            layers,
            annotations: Default::default(),
        };
        client.push_blob(reference, &payload).await?;
        client.push_blob(reference, &config).await?;
        client
            .push_manifest(
                reference,
                &tag,
                &serde_json::to_vec(&manifest).expect("JSON"),
            )
            .await
            .map(drop)
    })?
}

/// Where cosign keeps the signatures of the manifest `hex` of `reference`.
fn signatures_at(reference: &Reference, hex: &str) -> Reference {
    Reference {
        tag: Some(signature::signature_tag(hex)),
        digest: None,
        ..reference.clone()
    }
}

/// The most signatures read for one module, and the most bytes of them.
const MAX_SIGNATURES: usize = 16;
const MAX_SIGNATURES_BYTES: u64 = 1 << 20;

/// A module already in the store under its manifest digest.
fn from_store(
    store: &Store,
    reference: &Reference,
    hex: &str,
    max_bytes: u64,
) -> Result<Option<Fetched>, RegistryError> {
    let Some(manifest) = store
        .get(Kind::Manifest, hex, MAX_MANIFEST_BYTES)
        .map_err(RegistryError::local)?
    else {
        return Ok(None);
    };
    let layer = artifact::module_layer(&manifest)?;
    let module_hex = layer.hex()?.to_string();
    if layer.size > max_bytes {
        return Err(format!(
            "the module has {} bytes, more than the limit of {max_bytes}",
            layer.size
        )
        .into());
    }
    let Some(bytes) = store
        .get(Kind::Blob, &module_hex, max_bytes)
        .map_err(RegistryError::local)?
    else {
        return Ok(None);
    };
    Ok(Some(Fetched {
        bytes,
        module_hex,
        reference: reference.pinned(hex),
    }))
}

/// Fetches the manifest and the module into the store.
async fn fetch(
    client: &ClientOptions,
    store: &Store,
    reference: &Reference,
    max_bytes: u64,
) -> Result<Fetched, RegistryError> {
    let client = Client::new(client.clone())?;
    let (manifest, hex) = client.manifest(reference).await?.ok_or_else(|| {
        RegistryError::not_found(format!("{reference}: no such module in the registry"))
    })?;
    let layer = artifact::module_layer(&manifest)?;
    let bytes = client.blob(reference, &layer, max_bytes).await?;
    let module_hex = store
        .put(Kind::Blob, &bytes)
        .map_err(RegistryError::local)?;
    store
        .put(Kind::Manifest, &manifest)
        .map_err(RegistryError::local)?;
    Ok(Fetched {
        bytes,
        module_hex,
        reference: reference.pinned(&hex),
    })
}

/// Fetches the cosign signatures of a pinned reference into the store (an
/// empty list when there are none) and returns them.
async fn fetch_signatures(
    options: &ClientOptions,
    store: &Store,
    reference: &Reference,
) -> Result<Vec<Signed>, RegistryError> {
    let hex = reference
        .digest
        .as_deref()
        .ok_or_else(|| RegistryError::from("the reference has no digest".to_string()))?;
    let client = Client::new(options.clone())?;
    let at_tag = signatures_at(reference, hex);
    let mut signatures = Vec::new();
    if let Some((bytes, _)) = client.manifest(&at_tag).await? {
        let manifest: artifact::Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{at_tag}: not a signature manifest: {e}"))?;
        let layers = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE);
        let total: u64 = layers.clone().map(|l| l.size).sum();
        if layers.clone().count() > MAX_SIGNATURES || total > MAX_SIGNATURES_BYTES {
            return Err(format!(
                "{at_tag}: more than {MAX_SIGNATURES} signatures or {MAX_SIGNATURES_BYTES} bytes of them"
            )
            .into());
        }
        for layer in layers {
            let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
                continue;
            };
            let payload = client
                .blob(reference, layer, signature::MAX_PAYLOAD_BYTES)
                .await?;
            signatures.push(Signed {
                payload: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    payload,
                ),
                signature: signature.clone(),
            });
        }
    }
    store
        .put_signatures(hex, &serde_json::to_vec(&signatures).expect("JSON"))
        .map_err(RegistryError::local)?;
    Ok(signatures)
}

/// The signatures stored for a manifest; none when absent or unreadable
/// (the registry is asked again then).
fn stored_signatures(store: &Store, hex: &str) -> Vec<Signed> {
    store
        .signatures(hex, 2 * MAX_SIGNATURES_BYTES)
        .ok()
        .flatten()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

/// Runs a registry conversation to completion from synchronous code, on a
/// thread of its own, so it works inside or outside an async runtime.
fn run<T: Send>(future: impl Future<Output = T> + Send) -> Result<T, RegistryError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(future))
                    .map_err(|e| RegistryError::local(format!("starting the registry client: {e}")))
            })
            .join()
            .map_err(|_| RegistryError::local("the registry client panicked"))?
    })
}
