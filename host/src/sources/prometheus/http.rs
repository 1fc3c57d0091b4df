//! Talking to Prometheus: one client per source (its CA, no redirects, no
//! proxy from the environment unless the gate asks), the credentials read
//! from their files at each collection (tokens rotate), and instant queries
//! retried once within their budget when the failure was quick.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How shipgate reaches Prometheus: a view of the source's settings.
pub(super) struct Connection<'a> {
    pub(super) bearer_token_file: Option<&'a PathBuf>,
    pub(super) basic_auth: Option<&'a BasicAuth>,
    pub(super) ca_file: Option<&'a PathBuf>,
    pub(super) follow_redirects: bool,
    pub(super) proxy_from_environment: bool,
}

/// `basic_auth` of `[sources.prometheus]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuth {
    pub(crate) username: String,
    /// A file holding the password, read at each collection.
    pub(crate) password_file: PathBuf,
}

/// `tls_config` of `[sources.prometheus]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// CA certificates (PEM) to trust for an https:// url, besides the
    /// built-in roots.
    pub(crate) ca_file: PathBuf,
}

impl Connection<'_> {
    /// Checks the section; errors name the key under `at`.
    pub(super) fn validate(&self, at: &str) -> Result<(), String> {
        if self.bearer_token_file.is_some() && self.basic_auth.is_some() {
            return Err(format!(
                "{at}: bearer_token_file and basic_auth: give one way of authenticating"
            ));
        }
        let files = [
            ("bearer_token_file", self.bearer_token_file),
            (
                "basic_auth.password_file",
                self.basic_auth.map(|b| &b.password_file),
            ),
            ("tls_config.ca_file", self.ca_file),
        ];
        for (key, file) in files {
            if let Some(file) = file
                && !file.is_absolute()
            {
                return Err(format!(
                    "{at}.{key}: '{}' is not an absolute path",
                    file.display()
                ));
            }
        }
        Ok(())
    }

    /// The HTTP client for this connection.
    pub(super) fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder().redirect(if self.follow_redirects {
            reqwest::redirect::Policy::limited(5)
        } else {
            reqwest::redirect::Policy::none()
        });
        if !self.proxy_from_environment {
            builder = builder.no_proxy();
        }
        if let Some(file) = self.ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| format!("reading ca_file {}: {e}", file.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", file.display()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder
            .build()
            .map_err(|e| format!("setting up the HTTP client: {e}"))
    }

    /// The credentials, read from their files now.
    pub(super) fn credentials(&self) -> Result<Credentials, String> {
        let read = |file: &PathBuf| {
            std::fs::read_to_string(file)
                .map(|text| text.trim().to_string())
                .map_err(|e| format!("reading {}: {e}", file.display()))
        };
        if let Some(file) = self.bearer_token_file {
            return Ok(Credentials::Bearer(read(file)?));
        }
        if let Some(basic) = self.basic_auth {
            return Ok(Credentials::Basic(
                basic.username.clone(),
                read(&basic.password_file)?,
            ));
        }
        Ok(Credentials::None)
    }
}

/// Credentials as sent.
#[derive(Debug, Clone)]
pub(super) enum Credentials {
    None,
    Bearer(String),
    Basic(String, String),
}

/// One instant query's request: where, what, and with which credentials.
pub(super) struct InstantQuery<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) base: &'a str,
    pub(super) credentials: &'a Credentials,
    pub(super) query: &'a str,
    /// Unix seconds.
    pub(super) time: f64,
}

/// One range query (`/api/v1/query_range`): the same, over `start..=end`
/// at `step` seconds.
pub(super) struct RangeQuery<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) base: &'a str,
    pub(super) credentials: &'a Credentials,
    pub(super) query: &'a str,
    /// Unix seconds.
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) step: f64,
}

/// The wait before the one retry: a Prometheus restarting is back soon.
const RETRY_AFTER: Duration = Duration::from_millis(100);

impl InstantQuery<'_> {
    /// Runs the query within `budget` and reads its single value. A quick
    /// failure (refused connection, 5xx) is retried once if the budget
    /// still has time for it.
    pub(super) async fn value(&self, budget: Duration) -> Result<f64, String> {
        let call = Call {
            client: self.client,
            base: self.base,
            credentials: self.credentials,
            path: "query",
            params: vec![
                ("query", self.query.to_string()),
                ("time", format!("{:.3}", self.time)),
            ],
        };
        single_value(&call.data(budget).await?)
    }
}

impl RangeQuery<'_> {
    /// Runs the query within `budget` and reads its one series: each
    /// sample's time and value, `None` for a value that is not a finite
    /// number (NaN, ±Inf: a gap, never a zero).
    pub(super) async fn samples(
        &self,
        budget: Duration,
    ) -> Result<Vec<(f64, Option<f64>)>, String> {
        let call = Call {
            client: self.client,
            base: self.base,
            credentials: self.credentials,
            path: "query_range",
            params: vec![
                ("query", self.query.to_string()),
                ("start", format!("{:.3}", self.start)),
                ("end", format!("{:.3}", self.end)),
                ("step", format!("{}", self.step)),
            ],
        };
        single_series(&call.data(budget).await?)
    }
}

/// A request to one of Prometheus's query endpoints.
struct Call<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    credentials: &'a Credentials,
    /// `query` or `query_range`.
    path: &'static str,
    params: Vec<(&'static str, String)>,
}

impl Call<'_> {
    /// The answer's `data` within `budget`, retried once after a quick
    /// failure if the budget still has time for it.
    async fn data(&self, budget: Duration) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + budget;
        let first = self.once(budget).await;
        let Err(Failure { why, retry: true }) = first else {
            return first.map_err(|f| f.why);
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left <= RETRY_AFTER * 2 {
            return Err(why);
        }
        tokio::time::sleep(RETRY_AFTER).await;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.once(left)
            .await
            .map_err(|again| format!("{} (and once more: {})", why, again.why))
    }

    async fn once(&self, budget: Duration) -> Result<Value, Failure> {
        let endpoint = format!("{}/api/v1/{}", self.base.trim_end_matches('/'), self.path);
        let mut request = self
            .client
            .get(endpoint)
            .query(&self.params)
            .timeout(budget);
        request = match self.credentials {
            Credentials::None => request,
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic(user, password) => request.basic_auth(user, Some(password)),
        };
        let base = self.base;
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                Failure::fatal(format!("Prometheus at {base} did not answer in time"))
            } else {
                // Not the request's URL: the finding shows the query already.
                let why = error_chain(&e.without_url());
                Failure::retry(format!("Prometheus at {base} is unreachable: {why}"))
            }
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Failure::fatal(format!(
                "Prometheus at {base} answered HTTP {status} (a redirect, not followed: \
                 set follow_redirects if it is meant)"
            )));
        }
        let server_error = status.is_server_error();
        let body = read_bounded(response, base).await.map_err(Failure::fatal)?;
        let mut answer: Value = serde_json::from_slice(&body).map_err(|_| Failure {
            why: format!(
                "Prometheus answered HTTP {status} with a body that is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
            retry: server_error,
        })?;
        if answer["status"] != "success" {
            let error = answer["error"].as_str().unwrap_or("no error message");
            return Err(Failure {
                why: format!("Prometheus refused the query (HTTP {status}): {error}"),
                retry: server_error,
            });
        }
        Ok(answer["data"].take())
    }
}

/// Why a query failed, and whether trying again might help.
struct Failure {
    why: String,
    retry: bool,
}

impl Failure {
    fn fatal(why: String) -> Self {
        Failure { why, retry: false }
    }

    fn retry(why: String) -> Self {
        Failure { why, retry: true }
    }
}

/// The most of one answer read: a query that must aggregate to one series
/// needs a few hundred bytes, and a runaway one must not exhaust memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    base: &str,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer of Prometheus at {base}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "Prometheus at {base} answered more than {} KiB; the query must aggregate to one series",
                MAX_ANSWER_BYTES >> 10
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The one value of an instant query's `data`: a scalar, or a vector of
/// exactly one series.
pub(super) fn single_value(data: &Value) -> Result<f64, String> {
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([series]) => &series["value"],
            Some([]) => return Err("no series".into()),
            Some(many) => {
                return Err(format!(
                    "{} series; the query must aggregate to one (e.g. with sum)",
                    many.len()
                ));
            }
            None => return Err("a malformed vector".into()),
        },
        other => {
            return Err(format!(
                "a {} result; an instant query must give a scalar or one series",
                other.unwrap_or("malformed")
            ));
        }
    };
    let value = sample[1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or("a sample without a number")?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{value} (no data in the window)"))
    }
}

/// The samples of a range query's `data`: a matrix of exactly one series.
pub(super) fn single_series(data: &Value) -> Result<Vec<(f64, Option<f64>)>, String> {
    if data["resultType"] != "matrix" {
        return Err(format!(
            "a {} result; a range query gives a matrix",
            data["resultType"].as_str().unwrap_or("malformed")
        ));
    }
    let series = match data["result"].as_array().map(Vec::as_slice) {
        Some([series]) => series,
        Some([]) => return Err("no series".into()),
        Some(many) => {
            return Err(format!(
                "{} series; the query must aggregate to one (e.g. with sum)",
                many.len()
            ));
        }
        None => return Err("a malformed matrix".into()),
    };
    let samples = series["values"]
        .as_array()
        .ok_or("a series without values")?;
    samples
        .iter()
        .map(|sample| {
            let time = sample[0].as_f64().ok_or("a sample without a time")?;
            let value = sample[1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or("a sample without a number")?;
            Ok((time, Some(value).filter(|v| v.is_finite())))
        })
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback server answering its connections in turn with `answers`
    /// (whole HTTP responses); the requests it read, in order.
    async fn scripted(answers: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request[..n]).into_owned());
                let _ = socket.write_all(&answer).await;
            }
        });
        (base, seen)
    }

    fn response(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    const ONE: &str = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}"#;

    async fn value(
        base: &str,
        client: &reqwest::Client,
        credentials: &Credentials,
    ) -> Result<f64, String> {
        InstantQuery {
            client,
            base,
            credentials,
            query: "up",
            time: 1.0,
        }
        .value(Duration::from_secs(5))
        .await
    }

    fn connection() -> Connection<'static> {
        Connection {
            bearer_token_file: None,
            basic_auth: None,
            ca_file: None,
            follow_redirects: false,
            proxy_from_environment: false,
        }
    }

    #[tokio::test]
    async fn credentials_go_with_every_query() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let view = Connection {
            bearer_token_file: Some(&token),
            ..connection()
        };
        let (base, seen) = scripted(vec![response("200 OK", ONE)]).await;
        let client = view.client().unwrap();
        let credentials = view.credentials().unwrap();
        assert_eq!(value(&base, &client, &credentials).await, Ok(42.0));
        let request = seen.lock().unwrap()[0].to_lowercase();
        assert!(
            request.contains("authorization: bearer s3cret\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_unless_asked() {
        let redirect = b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n".to_vec();
        let (base, _) = scripted(vec![redirect]).await;
        let client = connection().client().unwrap();
        let error = value(&base, &client, &Credentials::None).await.unwrap_err();
        assert!(error.contains("a redirect, not followed"), "{error}");
    }

    #[tokio::test]
    async fn a_quick_failure_is_tried_once_more_within_the_budget() {
        let (base, seen) = scripted(vec![
            response("503 Service Unavailable", "restarting"),
            response("200 OK", ONE),
        ])
        .await;
        let client = connection().client().unwrap();
        assert_eq!(value(&base, &client, &Credentials::None).await, Ok(42.0));
        assert_eq!(seen.lock().unwrap().len(), 2);
        // Refused twice: both reasons are told.
        let gone = "http://127.0.0.1:1";
        let error = value(gone, &client, &Credentials::None).await.unwrap_err();
        assert!(
            error.contains("is unreachable") && error.contains("(and once more: "),
            "{error}"
        );
    }

    #[test]
    fn credentials_and_files_are_checked_with_the_gate() {
        let relative = PathBuf::from("token");
        let view = Connection {
            bearer_token_file: Some(&relative),
            ..connection()
        };
        let error = view.validate("sources.prometheus").unwrap_err();
        assert_eq!(
            error,
            "sources.prometheus.bearer_token_file: 'token' is not an absolute path"
        );
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_not_buffered() {
        let size = 4 * MAX_ANSWER_BYTES;
        let mut big = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
        big.extend(vec![b' '; size]);
        let (base, _) = scripted(vec![big]).await;
        let client = connection().client().unwrap();
        let error = value(&base, &client, &Credentials::None).await.unwrap_err();
        assert!(
            error.ends_with("answered more than 1024 KiB; the query must aggregate to one series"),
            "{error}"
        );
    }

    #[test]
    fn only_one_finite_value_counts_as_evidence() {
        let vector = |result: Value| json!({"resultType": "vector", "result": result});
        let one = vector(json!([{"metric": {}, "value": [1.0, "42.5"]}]));
        assert_eq!(single_value(&one), Ok(42.5));
        assert_eq!(single_value(&vector(json!([]))), Err("no series".into()));
        let two = vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]));
        assert!(single_value(&two).unwrap_err().starts_with("2 series"));
        let nan = vector(json!([{"value": [1, "NaN"]}]));
        assert_eq!(
            single_value(&nan),
            Err("NaN (no data in the window)".into())
        );
        let scalar = json!({"resultType": "scalar", "result": [1, "3"]});
        assert_eq!(single_value(&scalar), Ok(3.0));
    }

    #[test]
    fn a_range_answer_is_one_series_whose_non_numbers_are_gaps() {
        let matrix = |result: Value| json!({"resultType": "matrix", "result": result});
        let one = matrix(
            json!([{"metric": {}, "values": [[60, "1.5"], [120, "NaN"], [180, "+Inf"], [240, "2"]]}]),
        );
        assert_eq!(
            single_series(&one),
            Ok(vec![
                (60.0, Some(1.5)),
                (120.0, None),
                (180.0, None),
                (240.0, Some(2.0))
            ])
        );
        assert_eq!(single_series(&matrix(json!([]))), Err("no series".into()));
        let two = matrix(json!([{"values": []}, {"values": []}]));
        assert!(single_series(&two).unwrap_err().starts_with("2 series"));
        let vector = json!({"resultType": "vector", "result": []});
        assert!(
            single_series(&vector)
                .unwrap_err()
                .contains("a range query gives a matrix")
        );
    }
}
