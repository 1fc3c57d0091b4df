//! The GitHub App's side of a deployment protection rule: an installation
//! token from the App's JWT, then the review POSTed to the rule's callback
//! URL, retried on GitHub's 5xx and on connection errors.

use std::time::Duration;

use serde::Deserialize;

use crate::adapters::github::{self, Callback, Review, Settings};

/// Attempts per call, and the wait before the first retry (doubling).
const ATTEMPTS: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The budget of one HTTP call to GitHub.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What GitHub answers a token request with (the parts shipgate reads).
#[derive(Deserialize)]
struct InstallationToken {
    token: String,
}

/// Posts `review` for `callback`; the error says which call failed and why.
pub(super) async fn report(
    client: &reqwest::Client,
    settings: &Settings,
    callback: &Callback,
    review: &Review,
) -> Result<(), String> {
    let token = installation_token(client, settings, callback.installation).await?;
    let post = || client.post(&callback.url).bearer_auth(&token).json(review);
    let response = send(post)
        .await
        .map_err(|e| format!("posting the review: {e}"))?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status => Err(format!(
            "posting the review: GitHub answered HTTP {status}: {}",
            body_text(response).await
        )),
    }
}

/// A token for the App's installation, from a fresh App JWT.
async fn installation_token(
    client: &reqwest::Client,
    settings: &Settings,
    installation: u64,
) -> Result<String, String> {
    let jwt = github::app_jwt(settings, jiff::Timestamp::now().as_second())?;
    let url = format!(
        "{}/app/installations/{installation}/access_tokens",
        settings.routing.api_url.trim_end_matches('/')
    );
    let response = send(|| client.post(&url).bearer_auth(&jwt))
        .await
        .map_err(|e| format!("asking for an installation token: {e}"))?;
    let status = response.status().as_u16();
    if status != 201 {
        return Err(format!(
            "asking for an installation token: GitHub answered HTTP {status}: {}",
            body_text(response).await
        ));
    }
    let token: InstallationToken = response
        .json()
        .await
        .map_err(|e| format!("reading the installation token: {e}"))?;
    Ok(token.token)
}

/// Sends a request built by `request`, retrying a connection error or a 5xx
/// with a growing wait; any other answer is returned as it is.
async fn send(request: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
    let mut wait = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        let result = request()
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(
                "user-agent",
                concat!("shipgate/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        let retry = match &result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if !retry || attempt == ATTEMPTS {
            return result.map_err(|e| e.without_url().to_string());
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        attempt += 1;
    }
}

async fn body_text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    text.chars().take(300).collect()
}
