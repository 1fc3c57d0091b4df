//! The Wasm OCI artifact (the CNCF TAG Runtime layout that wasmtime, Spin
//! and wkg read): an OCI image manifest whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub(crate) const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// The largest manifest read (registries cap theirs at 4 MiB).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub(crate) schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_type: Option<String>,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) annotations: std::collections::BTreeMap<String, String>,
}

impl Descriptor {
    pub(crate) fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
            annotations: Default::default(),
        }
    }

    /// The hex of a `sha256:` digest, or why it is not one.
    pub(crate) fn hex(&self) -> Result<&str, String> {
        self.digest
            .strip_prefix("sha256:")
            .filter(|hex| super::store::is_hex_digest(hex))
            .ok_or_else(|| format!("digest '{}' is not a sha256 digest", self.digest))
    }
}

/// What the artifact's config says of the component, in oci-wasm's
/// `component` section (which `os = "wasip2"` calls for): what it imports
/// and exports, as the runtime links them (oci-wasm's own push also lists
/// the world's type names among the imports).
#[derive(Debug, Clone, Default)]
pub(crate) struct ComponentWorld {
    pub(crate) imports: Vec<String>,
    pub(crate) exports: Vec<String>,
}

/// The config blob, field by field in a fixed order: its bytes make the
/// manifest's digest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    created: String,
    architecture: &'a str,
    os: &'a str,
    layer_digests: [&'a str; 1],
    component: ComponentSection<'a>,
}

#[derive(Serialize)]
struct ComponentSection<'a> {
    exports: &'a [String],
    imports: &'a [String],
}

/// A module as a Wasm artifact: the config blob and the manifest, with the
/// module as its one layer. The config is the CNCF layout's, as oci-wasm's
/// `WasmConfig` reads it: `created` is `created` (the caller's choice, so
/// that the same module and time make the same bytes).
pub(crate) fn wasm_artifact(
    module: &[u8],
    title: &str,
    world: &ComponentWorld,
    created: jiff::Timestamp,
) -> (Vec<u8>, Vec<u8>) {
    let layer = Descriptor::of(WASM_LAYER_MEDIA_TYPE, module);
    let config = serde_json::to_vec(&WasmConfig {
        created: created.to_string(),
        architecture: "wasm",
        os: "wasip2",
        layer_digests: [&layer.digest],
        component: ComponentSection {
            exports: &world.exports,
            imports: &world.imports,
        },
    })
    .expect("JSON");
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
        artifact_type: None,
        config: Descriptor::of(WASM_CONFIG_MEDIA_TYPE, &config),
        layers: vec![layer],
        annotations: [(
            "org.opencontainers.image.title".to_string(),
            title.to_string(),
        )]
        .into(),
    };
    (config, serde_json::to_vec(&manifest).expect("JSON"))
}

/// The module layer of a Wasm artifact's manifest, refusing anything else.
pub(crate) fn module_layer(manifest: &[u8]) -> Result<Descriptor, String> {
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| format!("the manifest is not an OCI image manifest: {e}"))?;
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "not a Wasm artifact: its config is '{}', not {WASM_CONFIG_MEDIA_TYPE}",
            manifest.config.media_type
        ));
    }
    match &manifest.layers[..] {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => {
            layer.hex()?;
            Ok(layer.clone())
        }
        layers => Err(format!(
            "a Wasm artifact has one layer of type {WASM_LAYER_MEDIA_TYPE}; this one has {}",
            layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn artifact() -> (Vec<u8>, Vec<u8>) {
        let world = ComponentWorld {
            imports: vec!["shipgate:policy/types@0.4.0".into()],
            exports: vec!["evaluate".into()],
        };
        wasm_artifact(b"\0asm", "rules.wasm", &world, jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn an_artifact_names_its_module_as_its_one_layer() {
        let (config, manifest) = artifact();
        let layer = module_layer(&manifest).unwrap();
        assert_eq!(
            layer.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(b"\0asm")))
        );
        assert_eq!(layer.size, 4);
        assert_eq!(
            String::from_utf8(config.clone()).unwrap(),
            format!(
                "{{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"wasm\",\"os\":\"wasip2\",\
                 \"layerDigests\":[\"{}\"],\"component\":{{\"exports\":[\"evaluate\"],\
                 \"imports\":[\"shipgate:policy/types@0.4.0\"]}}}}",
                layer.digest
            ),
            "the config's bytes, in this order, make the digest"
        );
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["layerDigests"][0], layer.digest.as_str());
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["component"]["exports"], json!(["evaluate"]));
    }

    #[test]
    fn a_container_image_is_not_a_module() {
        let image = json!({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:00", "size": 1}, "layers": []});
        let error = module_layer(image.to_string().as_bytes()).unwrap_err();
        assert!(error.contains("not a Wasm artifact"), "{error}");
    }
}
