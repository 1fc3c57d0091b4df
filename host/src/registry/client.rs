//! The OCI distribution API, as much of it as modules need: manifests and
//! blobs in and out, with the registry's token or basic authentication.
//! Every response is bounded (size, time), every blob is checked against
//! its digest, and plain HTTP is used only for a loopback registry or one
//! named with `--insecure-registry`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::artifact::{Descriptor, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES};
use super::error::{RegistryError, RegistryErrorKind};
use super::reference::Reference;

/// How to reach registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientOptions {
    /// Registries (`host:port`) reached over plain HTTP although not loopback.
    pub(crate) insecure_registries: Vec<String>,
    /// Credentials for every registry, instead of the Docker config's.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// The Docker config file (default `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`).
    pub(crate) docker_config: Option<PathBuf>,
}

/// A connection may take this long to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request (a module download included) may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest token or error answer read.
const MAX_SMALL_BODY: u64 = 64 << 10;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub(crate) struct Client {
    http: reqwest::Client,
    options: ClientOptions,
    /// Bearer tokens by registry and scope.
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl Client {
    pub(crate) fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Blob downloads may go to storage elsewhere (reqwest drops
                // the Authorization header across hosts), never down to http.
                let downgrade = attempt.url().scheme() == "http"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    attempt.error("a redirect from https to plain http")
                } else if attempt.previous().len() > 5 {
                    attempt.error("more than 5 redirects")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("setting up HTTP: {e}"))?;
        Ok(Client {
            http,
            options,
            tokens: Mutex::default(),
        })
    }

    fn base(&self, reference: &Reference) -> String {
        let plain = reference.is_loopback()
            || self
                .options
                .insecure_registries
                .contains(&reference.registry);
        let scheme = if plain { "http" } else { "https" };
        format!(
            "{scheme}://{}/v2/{}",
            reference.registry, reference.repository
        )
    }

    /// The manifest `reference` names, checked against its digest when it
    /// has one. Returns the bytes and their hex sha256.
    pub(crate) async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let url = format!(
            "{}/manifests/{}",
            self.base(reference),
            reference.manifest_reference()
        );
        let response = self
            .send(reference, "pull", |http| {
                http.get(&url).header(ACCEPT, MANIFEST_TYPES)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = ok(response, &url).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_string();
        if !MANIFEST_TYPES.split(", ").any(|t| t == content_type) {
            return Err(format!(
                "{url}: the registry answered '{content_type}', not an image manifest \
                 (a module is one manifest with one layer, not an index)"
            )
            .into());
        }
        let bytes = body(response, MAX_MANIFEST_BYTES, &url).await?;
        let hex = hex::encode(Sha256::digest(&bytes));
        if let Some(pinned) = &reference.digest
            && *pinned != hex
        {
            return Err(format!(
                "{url}: the registry answered a manifest with sha256 {hex}, not the pinned {pinned}"
            )
            .into());
        }
        Ok(Some((bytes, hex)))
    }

    /// A blob, refused before download when its descriptor says it is larger
    /// than `max_bytes`, and checked against its digest.
    pub(crate) async fn blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        max_bytes: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let hex = blob.hex()?;
        if blob.size > max_bytes {
            return Err(format!(
                "the blob has {} bytes, more than the limit of {max_bytes}",
                blob.size
            )
            .into());
        }
        let url = format!("{}/blobs/sha256:{hex}", self.base(reference));
        let response = self.send(reference, "pull", |http| http.get(&url)).await?;
        let response = ok(response, &url).await?;
        let bytes = body(response, max_bytes, &url).await?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != hex {
            return Err(
                format!("{url}: the registry answered content with sha256 {actual}").into(),
            );
        }
        Ok(bytes)
    }

    /// Uploads a blob (monolithically) unless the registry has it.
    pub(crate) async fn push_blob(
        &self,
        reference: &Reference,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let base = self.base(reference);
        let exists = format!("{base}/blobs/{digest}");
        let head = self
            .send(reference, "pull,push", |http| http.head(&exists))
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        let start = format!("{base}/blobs/uploads/");
        let response = self
            .send(reference, "pull,push", |http| http.post(&start))
            .await?;
        let response = ok(response, &start).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| format!("{start}: no Location for the upload"))?;
        let location = response
            .url()
            .join(location)
            .map_err(|e| format!("{start}: a bad upload Location '{location}': {e}"))?;
        // The registry's credentials go to the registry only: the origin
        // asked, not one a redirect of the POST led to.
        let registry = reqwest::Url::parse(&start).map_err(|e| format!("{start}: {e}"))?;
        if location.origin() != registry.origin() {
            return Err(format!(
                "{start}: the registry sends the upload elsewhere ({}); credentials are not sent there",
                location.origin().ascii_serialization()
            ).into());
        }
        let mut upload = location.clone();
        upload.query_pairs_mut().append_pair("digest", &digest);
        let bytes = bytes.to_vec();
        let response = self
            .send(reference, "pull,push", |http| {
                http.request(Method::PUT, upload.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone())
            })
            .await?;
        ok(response, upload.as_str()).await.map(drop)
    }

    /// Puts a manifest under `tag` and returns its hex sha256.
    pub(crate) async fn push_manifest(
        &self,
        reference: &Reference,
        tag: &str,
        manifest: &[u8],
    ) -> Result<String, RegistryError> {
        let url = format!("{}/manifests/{tag}", self.base(reference));
        let bytes = manifest.to_vec();
        let response = self
            .send(reference, "pull,push", |http| {
                http.put(&url)
                    .header(CONTENT_TYPE, MANIFEST_MEDIA_TYPE)
                    .body(bytes.clone())
            })
            .await?;
        ok(response, &url).await?;
        Ok(hex::encode(Sha256::digest(manifest)))
    }

    /// A file at `url` (`https://`, or `http://` on loopback or an insecure
    /// host), at most `max_bytes` of it.
    pub(crate) async fn download(
        &self,
        url: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let authority = authority(&parsed);
        match parsed.scheme() {
            "https" => {}
            "http" if self.plain_http_allowed(&parsed) => {}
            _ => {
                return Err(format!(
                    "{url}: modules are fetched over https (plain http only from loopback)"
                )
                .into());
            }
        }
        let response = self.http.get(parsed).send().await.map_err(|e| {
            format!(
                "{authority}: {} ({url})",
                if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    e.to_string()
                }
            )
        })?;
        let response = ok(response, url).await?;
        body(response, max_bytes, url).await
    }

    /// Sends a request; on 401, authenticates as the registry asks (a bearer
    /// token for `scope`, or basic) and sends it once more.
    async fn send(
        &self,
        reference: &Reference,
        actions: &str,
        request: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = format!("repository:{}:{actions}", reference.repository);
        let key = (reference.registry.clone(), scope.clone());
        let cached = self.tokens.lock().expect("not poisoned").get(&key).cloned();
        let first = with_auth(request(&self.http), cached.as_deref());
        let response = first.send().await.map_err(|e| unreachable(reference, &e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let authorization = self.authorize(reference, &challenge, &scope).await?;
        self.tokens
            .lock()
            .expect("not poisoned")
            .insert(key, authorization.clone());
        with_auth(request(&self.http), Some(&authorization))
            .send()
            .await
            .map_err(|e| unreachable(reference, &e))
    }

    /// The Authorization header a 401 challenge asks for.
    async fn authorize(
        &self,
        reference: &Reference,
        challenge: &str,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let basic = self
            .credentials(&reference.registry)?
            .map(|(user, password)| {
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            });
        let (kind, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if kind.eq_ignore_ascii_case("basic") {
            return basic.ok_or_else(|| {
                RegistryError::new(
                    RegistryErrorKind::Denied,
                    format!(
                        "{}: the registry asks for credentials and none are configured",
                        reference.registry
                    ),
                )
            });
        }
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "{}: unsupported authentication '{challenge}'",
                reference.registry
            )
            .into());
        }
        let params = challenge_params(params);
        let realm = params
            .get("realm")
            .ok_or_else(|| format!("{}: a bearer challenge without a realm", reference.registry))?;
        let mut url =
            reqwest::Url::parse(realm).map_err(|e| format!("token realm '{realm}': {e}"))?;
        // The realm's own host decides: a registry reached on loopback (a
        // port-forward) may name a token service far away.
        if url.scheme() != "https" && !(url.scheme() == "http" && self.plain_http_allowed(&url)) {
            return Err(format!(
                "{}: the token realm '{realm}' is not https; credentials are not sent there \
                 (name its host:port with --insecure-registry if plain http is meant)",
                reference.registry
            )
            .into());
        }
        if let Some(service) = params.get("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        url.query_pairs_mut().append_pair("scope", scope);
        let mut request = self.http.get(url.clone());
        if let Some(basic) = &basic {
            request = request.header(AUTHORIZATION, basic);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(reference, &e))?;
        let response = ok(response, url.as_str()).await?;
        let token: serde_json::Value =
            serde_json::from_slice(&body(response, MAX_SMALL_BODY, url.as_str()).await?)
                .map_err(|e| format!("{url}: the token answer is not JSON: {e}"))?;
        let token = token["token"]
            .as_str()
            .or(token["access_token"].as_str())
            .ok_or_else(|| format!("{url}: the token answer has no token"))?;
        Ok(format!("Bearer {token}"))
    }

    /// Whether plain http may carry a request to `url`: its host is
    /// loopback, or named insecure (`SHIPGATE_INSECURE_REGISTRIES`).
    fn plain_http_allowed(&self, url: &reqwest::Url) -> bool {
        super::reference::is_loopback_host(url.host_str().unwrap_or(""))
            || self.options.insecure_registries.contains(&authority(url))
    }

    /// `--username`/`--password-stdin`, else the Docker config's entry for
    /// the registry. Credential helpers are not run.
    fn credentials(&self, registry: &str) -> Result<Option<(String, String)>, RegistryError> {
        if let (Some(user), Some(password)) = (&self.options.username, &self.options.password) {
            return Ok(Some((user.clone(), password.clone())));
        }
        let path = self.options.docker_config.clone().or_else(|| {
            std::env::var_os("DOCKER_CONFIG")
                .map(|d| PathBuf::from(d).join("config.json"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
                })
        });
        let Some(path) = path else { return Ok(None) };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RegistryError::local(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let auths = config["auths"].as_object();
        let entry = auths.and_then(|auths| {
            auths.iter().find_map(|(key, value)| {
                let host = key
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                (host.split('/').next() == Some(registry)).then_some(value)
            })
        });
        let Some(entry) = entry else { return Ok(None) };
        if let Some(auth) = entry["auth"].as_str() {
            let decoded = STANDARD
                .decode(auth)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    format!(
                        "{}: auths.{registry}.auth is not base64 of user:password",
                        path.display()
                    )
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                format!(
                    "{}: auths.{registry}.auth is not user:password",
                    path.display()
                )
            })?;
            return Ok(Some((user.to_string(), password.to_string())));
        }
        match (entry["username"].as_str(), entry["password"].as_str()) {
            (Some(user), Some(password)) => Ok(Some((user.to_string(), password.to_string()))),
            _ => Ok(None),
        }
    }
}

/// `host` or `host:port`, as registries are named.
fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn with_auth(request: RequestBuilder, authorization: Option<&str>) -> RequestBuilder {
    match authorization {
        Some(value) => request.header(AUTHORIZATION, value),
        None => request,
    }
}

fn unreachable(reference: &Reference, error: &reqwest::Error) -> RegistryError {
    let why = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        error.to_string()
    };
    RegistryError::unreachable(format!(
        "registry {}: {why} ({})",
        reference.registry,
        error.url().map_or("", |u| u.as_str())
    ))
}

/// A successful response, or the registry's error as a message.
async fn ok(response: Response, url: &str) -> Result<Response, RegistryError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let detail = body(response, MAX_SMALL_BODY, url)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .map_or_else(String::new, |m| format!(": {m}"));
    Err(RegistryError::from_status(
        status.as_u16(),
        format!("{url}: the registry answered {status}{detail}"),
    ))
}

/// The body, refused as soon as it passes `max_bytes`.
async fn body(mut response: Response, max_bytes: u64, url: &str) -> Result<Vec<u8>, RegistryError> {
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(format!("{url}: the answer is larger than {max_bytes} bytes").into());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::unreachable(format!("{url}: {e}")))?
    {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(format!("{url}: the answer is larger than {max_bytes} bytes").into());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `realm="…",service="…",scope="…"` as a map.
fn challenge_params(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, after)) => (value, after),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key, value.to_string());
        rest = after.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_as_registries_write_them() {
        let params = challenge_params(
            r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/rules:pull""#,
        );
        assert_eq!(params["realm"], "https://ghcr.io/token");
        assert_eq!(params["service"], "ghcr.io");
        assert_eq!(params["scope"], "repository:acme/rules:pull");
    }

    #[test]
    fn docker_config_credentials_are_found_by_registry() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths": {{"https://ghcr.io": {{"auth": "{}"}}, "127.0.0.1:5000": {{"username": "u", "password": "p"}}}}}}"#,
                STANDARD.encode("ci:s3cret")
            ),
        )
        .unwrap();
        let client = Client::new(ClientOptions {
            docker_config: Some(config),
            ..ClientOptions::default()
        })
        .unwrap();
        assert_eq!(
            client.credentials("ghcr.io").unwrap(),
            Some(("ci".into(), "s3cret".into()))
        );
        assert_eq!(
            client.credentials("127.0.0.1:5000").unwrap(),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(client.credentials("quay.io").unwrap(), None);
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_named() {
        let client = Client::new(ClientOptions {
            insecure_registries: vec!["registry.lan:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        let base = |r: &str| client.base(&Reference::parse(r).unwrap());
        assert_eq!(
            base("oci://127.0.0.1:5000/rules:v1"),
            "http://127.0.0.1:5000/v2/rules"
        );
        assert_eq!(
            base("oci://registry.lan:5000/rules:v1"),
            "http://registry.lan:5000/v2/rules"
        );
        assert_eq!(
            base("oci://ghcr.io/acme/rules:v1"),
            "https://ghcr.io/v2/acme/rules"
        );
    }

    #[test]
    fn credentials_go_to_a_plain_http_realm_only_on_loopback_or_when_named() {
        let client = Client::new(ClientOptions {
            insecure_registries: vec!["registry.lan:5000".into()],
            username: Some("ci".into()),
            password: Some("s3cret".into()),
            ..ClientOptions::default()
        })
        .unwrap();
        let allowed = |url: &str| client.plain_http_allowed(&reqwest::Url::parse(url).unwrap());
        assert!(allowed("http://127.0.0.1:5000/token"));
        assert!(allowed("http://localhost/token"));
        assert!(allowed("http://registry.lan:5000/token"));
        assert!(!allowed("http://registry.lan/token"));
        assert!(!allowed("http://auth.example/token"));
        // A registry on loopback (a port-forward) naming a token service
        // far away over plain http: refused before anything is sent.
        let registry = Reference::parse("oci://127.0.0.1:5000/rules:v1").unwrap();
        let challenge = r#"Bearer realm="http://auth.example/token",service="registry""#;
        let refused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.authorize(&registry, challenge, "repository:rules:pull"))
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("is not https; credentials are not sent there"),
            "{refused}"
        );
    }
}
