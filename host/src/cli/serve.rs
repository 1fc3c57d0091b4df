//! `shipgate serve`: its command line, and turning it into the server's
//! [`Settings`]: secrets from files or the environment, durations, sane
//! defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shipgate_policy::Phase;

use crate::adapters::{self, ADAPTERS, Adapter, Authentication, github, spinnaker};
use crate::decision_log::LogTarget;
use crate::decision_log::ship::ShipperSettings;
use crate::error::{Error, exit};
use crate::server::{self, ConnectionLimits, Settings};
use crate::service::ServiceSettings;

/// Environment variable holding the bearer token (when no --token-file).
const TOKEN_ENV: &str = "SHIPGATE_TOKEN";
/// Environment variable holding the evaluation key (when no --key-file).
const KEY_ENV: &str = "SHIPGATE_EVALUATION_KEY";
/// Environment variable holding the GitHub webhook secret.
const GITHUB_SECRET_ENV: &str = "SHIPGATE_GITHUB_WEBHOOK_SECRET";
/// How the shipped manifests' placeholder secrets begin.
const PLACEHOLDER: &str = "REPLACE-WITH-";
/// Shortest evaluation key accepted, in bytes.
const MIN_KEY_BYTES: usize = 32;
/// The most evaluations at once: each holds a pool slot of instances.
const MAX_EVALUATING: usize = 4096;
/// The most requests admitted at once.
const MAX_PENDING: usize = 1 << 20;

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// The gate file (TOML) to serve; SIGHUP reloads it.
    #[arg(long, value_name = "FILE", env = "SHIPGATE_GATE")]
    gate: PathBuf,
    /// Address and port to listen on (port 0 picks a free one; the log
    /// line "listening" gives it).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "SHIPGATE_LISTEN"
    )]
    listen: SocketAddr,
    /// File holding the bearer token every /v1 request must send
    /// (default: $SHIPGATE_TOKEN; none: no authentication).
    #[arg(long, value_name = "FILE", env = "SHIPGATE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// File holding the key (≥ 32 bytes) that signs Spinnaker evaluation
    /// ids; every replica needs the same one (default:
    /// $SHIPGATE_EVALUATION_KEY; none: a random key, valid on this process only).
    #[arg(long, value_name = "FILE", env = "SHIPGATE_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// How long a Spinnaker evaluation answers its status URL.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration, env = "SHIPGATE_EVALUATION_TTL")]
    evaluation_ttl: Duration,
    /// Budget of one request, evidence and evaluation included.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "SHIPGATE_REQUEST_TIMEOUT")]
    request_timeout: Duration,
    /// Largest request body accepted.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, env = "SHIPGATE_MAX_BODY_BYTES")]
    max_body_bytes: usize,
    /// Largest Kayenta remote-judge request accepted at /v1/kayenta/judge
    /// (Kayenta sends every point of every metric: 50 metrics of a day at
    /// one minute are about 3 MB).
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20, env = "SHIPGATE_MAX_JUDGE_BODY_BYTES")]
    max_judge_body_bytes: usize,
    /// Requests admitted at once from one adapter (each has its own
    /// places); beyond this, 503 with Retry-After.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1024,
        env = "SHIPGATE_MAX_PENDING"
    )]
    max_pending: usize,
    /// Gate evaluations running at once (default: twice the CPUs, at least 4).
    #[arg(long, value_name = "N", env = "SHIPGATE_MAX_EVALUATING")]
    max_evaluating: Option<usize>,
    /// Kayenta judgements admitted at once, bodies included; beyond this,
    /// 503. Each takes an evaluation slot while it runs (a large one a
    /// second when two are free), so at most twice this many of
    /// --max-evaluating (default: 2, or --max-evaluating when lower).
    #[arg(long, value_name = "N", env = "SHIPGATE_MAX_JUDGING")]
    max_judging: Option<usize>,
    /// Base URL of status links given to Spinnaker, e.g.
    /// https://shipgate.example.com (default: from the request's Host).
    #[arg(long, value_name = "URL", env = "SHIPGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Build Spinnaker status links from X-Forwarded-Proto and
    /// X-Forwarded-Host: only behind a proxy that sets both itself
    /// (default: ignored, as any caller could send them).
    #[arg(long, env = "SHIPGATE_TRUST_FORWARDED_HEADERS")]
    trust_forwarded_headers: bool,
    /// Append every decision, with its snapshot, to this JSON-lines log
    /// before answering; `-` writes the lines to standard output instead
    /// (the server's own log goes to standard error).
    #[arg(long, value_name = "FILE|-", env = "SHIPGATE_DECISION_LOG")]
    decision_log: Option<PathBuf>,
    /// Also POST every decision record to this collector, in gzipped
    /// JSON-lines batches (best effort: a decision never waits for it;
    /// records it cannot take are counted in /metrics).
    #[arg(long, value_name = "URL", env = "SHIPGATE_DECISION_LOG_URL")]
    decision_log_url: Option<String>,
    /// Let --decision-log-url be plain http:// to a host beyond loopback
    /// (records hold every snapshot; default: https required there).
    #[arg(long, env = "SHIPGATE_INSECURE_DECISION_LOG_URL")]
    insecure_decision_log_url: bool,
    /// The most record bytes waiting for the collector; beyond, new records
    /// are dropped (and counted).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, env = "SHIPGATE_DECISION_LOG_QUEUE_BYTES")]
    decision_log_queue_bytes: usize,
    /// After SIGTERM, how long to keep answering (with /readyz failing)
    /// before the port closes, so that load balancers stop sending first
    /// (Kubernetes keeps routing to a terminating pod for a few seconds).
    /// A second SIGTERM ends it at once. `0s` closes right away.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_delay, env = "SHIPGATE_SHUTDOWN_DELAY")]
    shutdown_delay: Duration,
    /// How often to check whether the gate file or its module files changed,
    /// and reload the gate when they did (a mounted ConfigMap changes by a
    /// swapped symbolic link). `0s` turns watching off; SIGHUP still reloads.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_delay, env = "SHIPGATE_WATCH_INTERVAL")]
    watch_interval: Duration,
    /// Read modules from registries (`oci://`) from this store, filled by
    /// `shipgate pull --store DIR` (an init container): with every module
    /// and signature in it, no registry is asked (default: $SHIPGATE_STORE,
    /// else ~/.local/share/shipgate/store, fetching what is missing).
    #[arg(long, value_name = "DIR", env = "SHIPGATE_STORE")]
    store: Option<PathBuf>,
    /// Refuse a gate with a module not built in that is not pinned (an
    /// `oci://…@sha256:` reference, or `sha256` for a file).
    #[arg(long, env = "SHIPGATE_REQUIRE_PINS")]
    require_pins: bool,
    /// Run only modules from registries signed by a --trust-key key (a
    /// gate's own `verify` key must be one of them).
    #[arg(long, requires = "trust_keys", env = "SHIPGATE_REQUIRE_SIGNATURES")]
    require_signatures: bool,
    /// A public key (PEM, as `cosign.pub`) modules may be signed by
    /// (repeatable). The keys belong to the server: a gate's `verify` key
    /// must be one of them, so whoever edits the gate cannot bring their own.
    #[arg(
        long = "trust-key",
        value_name = "FILE",
        value_delimiter = ',',
        env = "SHIPGATE_TRUST_KEY"
    )]
    trust_keys: Vec<PathBuf>,
    /// Serve GitHub deployment protection rules as this GitHub App (its App
    /// id or client id) at POST /v1/github/deployment-protection.
    #[arg(long, value_name = "ID", requires_all = ["github_private_key_file"], env = "SHIPGATE_GITHUB_APP_ID")]
    github_app_id: Option<String>,
    /// The GitHub App's private key (PEM, as GitHub hands it out).
    #[arg(
        long,
        value_name = "FILE",
        requires = "github_app_id",
        env = "SHIPGATE_GITHUB_PRIVATE_KEY_FILE"
    )]
    github_private_key_file: Option<PathBuf>,
    /// File holding the App's webhook secret (default:
    /// $SHIPGATE_GITHUB_WEBHOOK_SECRET); deliveries not signed with it are
    /// refused.
    #[arg(
        long,
        value_name = "FILE",
        requires = "github_app_id",
        env = "SHIPGATE_GITHUB_WEBHOOK_SECRET_FILE"
    )]
    github_webhook_secret_file: Option<PathBuf>,
    /// GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://api.github.com",
        env = "SHIPGATE_GITHUB_API_URL"
    )]
    github_api_url: String,
    /// The phase an environment's protection rule asks for, as NAME=PHASE
    /// (repeatable); other environments ask for preflight.
    #[arg(long = "github-environment", value_name = "NAME=PHASE", value_parser = parse_environment, env = "SHIPGATE_GITHUB_ENVIRONMENT", value_delimiter = ',')]
    github_environments: Vec<(String, Phase)>,
    /// Serve only these adapters' routes (comma-separated; default: all
    /// but `kayenta`, which takes large bodies and is served only when
    /// named). A Flagger-facing instance, which cannot be sent a token,
    /// serves `flagger` alone.
    #[arg(
        long,
        value_parser = adapter_name,
        value_delimiter = ',',
        value_name = "LIST",
        env = "SHIPGATE_ADAPTERS"
    )]
    adapters: Vec<&'static Adapter>,
    /// Serve /v1/* without a bearer token on a non-loopback address. Without
    /// it, such a server refuses to start: decisions are not for anyone who
    /// can reach the port. (GitHub deliveries are signed, and need no token.)
    #[arg(long, env = "SHIPGATE_INSECURE")]
    insecure: bool,
    /// Serve /healthz, /readyz and /metrics on this address instead of the
    /// main one (which then serves decisions only).
    #[arg(long, value_name = "ADDR", env = "SHIPGATE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Connections open at once; beyond, new ones wait to be accepted.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4096,
        env = "SHIPGATE_MAX_CONNECTIONS"
    )]
    max_connections: usize,
    /// Connections open at once from one address (default: a quarter of
    /// --max-connections); beyond, a new one is closed at once.
    #[arg(long, value_name = "N", env = "SHIPGATE_MAX_CONNECTIONS_PER_PEER")]
    max_connections_per_peer: Option<usize>,
    /// Time a write of an answer may wait for the client to read it; a
    /// client that stops reading is disconnected.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "SHIPGATE_WRITE_TIMEOUT")]
    write_timeout: Duration,
    /// After this, a kept-alive connection finishes its request and closes.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, env = "SHIPGATE_CONNECTION_LIFETIME")]
    connection_lifetime: Duration,
    /// Time a connection has to send a request's headers; also how long a
    /// kept-alive connection may sit idle.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, env = "SHIPGATE_HEADER_TIMEOUT")]
    header_timeout: Duration,
    /// After the port closes, how long the connections still open may take
    /// to finish before they are closed.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_delay, env = "SHIPGATE_DRAIN_TIMEOUT")]
    drain_timeout: Duration,
}

impl ServeArgs {
    /// The `--trust-key` files, read and parsed; an error names the file.
    fn trusted_keys(&self) -> Result<Vec<crate::registry::PublicKey>, Error> {
        self.trust_keys
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| Error::reading(path, e))?;
                crate::registry::PublicKey::from_pem(&text)
                    .map_err(|why| Error::Usage(format!("--trust-key {}: {why}", path.display())))
            })
            .collect()
    }
}

/// `--github-api-url` as a URL, not a prefix (`http://127.0.0.1:80@evil.example`
/// is evil.example): https, or plain http to 127.0.0.1 only, without
/// credentials, query or fragment; without its trailing slash.
fn github_api_url(text: &str) -> Result<String, Error> {
    let refuse = |why: &str| {
        Err(Error::Usage(format!(
            "--github-api-url: '{text}' {why} (https://, or plain http only on 127.0.0.1)"
        )))
    };
    let Ok(url) = reqwest::Url::parse(text) else {
        return refuse("is not a URL");
    };
    let loopback = url.host_str() == Some("127.0.0.1");
    match url.scheme() {
        "https" if url.host_str().is_some() => {}
        "http" if loopback => {}
        _ => return refuse("is not an https:// URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("carries credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return refuse("has a query or fragment");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// An adapter `--adapters` names, from the adapter table.
fn adapter_name(text: &str) -> Result<&'static Adapter, String> {
    adapters::by_name(text).ok_or_else(|| {
        let names: Vec<&str> = ADAPTERS.iter().map(|a| a.name).collect();
        format!("no adapter '{text}' (adapters: {})", names.join(", "))
    })
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 30s, 10m, 2h)"))?;
    Duration::try_from(parsed)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' must be longer than zero"))
}

/// `NAME=PHASE`.
fn parse_environment(text: &str) -> Result<(String, Phase), String> {
    let (name, phase) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=PHASE (e.g. production=preflight)"))?;
    Ok((name.to_string(), phase.parse()?))
}

/// A duration that may be zero.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 0s, 5s, 1m)"))?;
    Duration::try_from(parsed).map_err(|_| format!("'{text}' must not be negative"))
}

impl ServeArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let _written_at_exit = server::init_logging();
        server::run(self.settings()?, self.listen)?;
        Ok(exit::ALLOW)
    }

    fn settings(&self) -> Result<Settings, Error> {
        let token = secret(self.token_file.as_deref(), TOKEN_ENV, "--token-file")?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| Error::InvalidInput("the bearer token is not UTF-8 text".into()))
            })
            .transpose()?;
        let given_key = secret(self.key_file.as_deref(), KEY_ENV, "--key-file")?;
        let evaluation_key_is_random = given_key.is_none();
        let evaluation_key = match given_key {
            Some(key) if key.len() >= MIN_KEY_BYTES => key,
            Some(key) => {
                return Err(Error::InvalidInput(format!(
                    "the evaluation key has {} bytes; use at least {MIN_KEY_BYTES} \
                     (e.g. `head -c 32 /dev/urandom | base64`)",
                    key.len()
                )));
            }
            None => random_key()?,
        };
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::Usage(format!(
                "--public-url: '{url}' is not an http:// or https:// URL"
            )));
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max_evaluating = self.max_evaluating.unwrap_or((2 * cpus).max(4));
        let max_judging = self.max_judging.unwrap_or(max_evaluating.min(2));
        if max_judging == 0 || max_judging > max_evaluating {
            return Err(Error::Usage(format!(
                "--max-judging must be between 1 and --max-evaluating ({max_evaluating})"
            )));
        }
        if max_evaluating == 0 || self.max_pending == 0 {
            return Err(Error::Usage(
                "--max-evaluating and --max-pending must be at least 1".into(),
            ));
        }
        // Each evaluation is a pool slot of policy instances; the pool is
        // sized from these, and so is every semaphore.
        if max_evaluating > MAX_EVALUATING || self.max_pending > MAX_PENDING {
            return Err(Error::Usage(format!(
                "--max-evaluating may be at most {MAX_EVALUATING} and --max-pending at most {MAX_PENDING}"
            )));
        }
        let github = self.github()?;
        let adapters: Vec<&'static Adapter> = if self.adapters.is_empty() {
            ADAPTERS.into_iter().filter(|a| !a.opt_in).collect()
        } else {
            self.adapters.clone()
        };
        let bearer_open = adapters
            .iter()
            .any(|a| a.authentication == Authentication::Bearer);
        if token.is_none() && bearer_open && !self.insecure && !self.listen.ip().is_loopback() {
            return Err(Error::Usage(format!(
                "refusing to serve decisions without a bearer token on {}: set --token-file or \
                 ${TOKEN_ENV}, listen on a loopback address, or pass --insecure (an instance for \
                 Flagger, which cannot send a token: --adapters flagger --insecure, behind a \
                 NetworkPolicy)",
                self.listen
            )));
        }
        let decision_log_url = match &self.decision_log_url {
            Some(text) => {
                let url = reqwest::Url::parse(text)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    // Not echoed: it may hold credentials.
                    .ok_or_else(|| {
                        Error::Usage(
                            "--decision-log-url: not an http:// or https:// URL with a host".into(),
                        )
                    })?;
                let host = url.host_str().unwrap_or_default();
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if url.scheme() == "http" && !loopback && !self.insecure_decision_log_url {
                    return Err(Error::Usage(format!(
                        "--decision-log-url: plain http:// to {} would carry every snapshot \
                         unencrypted; use https://, or --insecure-decision-log-url for a collector \
                         on a network you trust",
                        host
                    )));
                }
                // At least a request's whole snapshot must fit (a record adds
                // its decision; larger ones are dropped as queue_full).
                if self.decision_log_queue_bytes < self.max_body_bytes {
                    return Err(Error::Usage(format!(
                        "--decision-log-queue-bytes ({}) must be at least --max-body-bytes ({})",
                        self.decision_log_queue_bytes, self.max_body_bytes
                    )));
                }
                Some(ShipperSettings {
                    url,
                    queue_bytes: self.decision_log_queue_bytes,
                })
            }
            None => None,
        };
        if self.max_connections == 0 || self.max_connections > MAX_PENDING {
            return Err(Error::Usage(format!(
                "--max-connections must be between 1 and {MAX_PENDING}"
            )));
        }
        let max_per_peer = self
            .max_connections_per_peer
            .unwrap_or((self.max_connections / 4).max(1));
        if max_per_peer == 0 || max_per_peer > self.max_connections {
            return Err(Error::Usage(format!(
                "--max-connections-per-peer must be between 1 and --max-connections ({})",
                self.max_connections
            )));
        }
        Ok(Settings {
            service: ServiceSettings {
                gate_path: self.gate.clone(),
                store: self.store.clone(),
                require_pins: self.require_pins,
                require_signatures: self.require_signatures,
                trusted_keys: self.trusted_keys()?,
                request_timeout: self.request_timeout,
                max_pending: self.max_pending.max(max_evaluating),
                max_evaluating,
                max_judging,
                decision_log: self.decision_log.as_deref().map(LogTarget::from_arg),
                decision_log_url,
            },
            adapters,
            operations_listen: self.metrics_listen,
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                max_per_peer,
                header_timeout: self.header_timeout,
                write_timeout: self.write_timeout,
                lifetime: self.connection_lifetime,
                drain_timeout: self.drain_timeout,
            },
            github,
            token,
            spinnaker: spinnaker::Settings {
                key: evaluation_key,
                key_is_random: evaluation_key_is_random,
                ttl: self.evaluation_ttl,
                public_url: self.public_url.clone(),
                trust_forwarded: self.trust_forwarded_headers,
            },
            max_body_bytes: self.max_body_bytes,
            max_judge_body_bytes: self.max_judge_body_bytes,
            shutdown_delay: self.shutdown_delay,
            watch_interval: Some(self.watch_interval).filter(|d| !d.is_zero()),
        })
    }
}

impl ServeArgs {
    /// The GitHub App's settings, when one is configured.
    fn github(&self) -> Result<Option<github::Settings>, Error> {
        let (Some(app_id), Some(key_file)) = (&self.github_app_id, &self.github_private_key_file)
        else {
            return Ok(None);
        };
        let pem = std::fs::read_to_string(key_file).map_err(|e| Error::reading(key_file, e))?;
        let key = github::read_key(&pem)
            .map_err(|why| Error::InvalidInput(format!("{}: {why}", key_file.display())))?;
        let secret = secret(
            self.github_webhook_secret_file.as_deref(),
            GITHUB_SECRET_ENV,
            "--github-webhook-secret-file",
        )?
        .ok_or_else(|| {
            Error::Usage(format!(
                "--github-app-id needs the webhook secret: --github-webhook-secret-file or ${GITHUB_SECRET_ENV}"
            ))
        })?;
        let api_url = github_api_url(&self.github_api_url)?;
        Ok(Some(github::Settings {
            app_id: app_id.clone(),
            key: std::sync::Arc::new(key),
            webhook_secret: secret,
            routing: github::Routing {
                api_url,
                environments: self.github_environments.iter().cloned().collect(),
                default_phase: Phase::Preflight,
            },
        }))
    }
}

/// A secret from a file, else from the environment; surrounding white
/// space (a trailing newline) is not part of it.
fn secret(file: Option<&Path>, env: &str, flag: &str) -> Result<Option<Vec<u8>>, Error> {
    let bytes = match file {
        Some(path) => std::fs::read(path).map_err(|e| Error::reading(path, e))?,
        None => match std::env::var_os(env) {
            Some(value) => value.into_encoded_bytes(),
            None => return Ok(None),
        },
    };
    let trimmed = bytes.trim_ascii().to_vec();
    let source = || file.map_or_else(|| format!("${env}"), |p| format!("{flag} {}", p.display()));
    if trimmed.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: the secret is empty",
            source()
        )));
    }
    // The shipped manifests' placeholders: a secret everyone can read.
    if trimmed.starts_with(PLACEHOLDER.as_bytes()) {
        return Err(Error::InvalidInput(format!(
            "{}: the secret is still the manifest's placeholder ({PLACEHOLDER}...); \
             set a random one, e.g. `openssl rand -hex 32`",
            source()
        )));
    }
    Ok(Some(trimmed))
}

/// From the kernel's getrandom(2): no /dev needed (a chroot, an image
/// run without its runtime's /dev).
fn random_key() -> Result<Vec<u8>, Error> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; MIN_KEY_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "the kernel's random number generator failed"
            ))
        })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_github_api_url_is_read_as_a_url() {
        assert_eq!(
            github_api_url("https://api.github.com/").unwrap(),
            "https://api.github.com"
        );
        assert_eq!(
            github_api_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for evil in [
            "http://127.0.0.1:80@evil.example",
            "http://evil.example",
            "https://user:secret@ghe.example",
            "ftp://api.github.com",
            "api.github.com",
        ] {
            assert!(github_api_url(evil).is_err(), "{evil}");
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert!(parse_delay("-5s").unwrap_err().contains("negative"));
    }
}
