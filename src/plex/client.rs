//! The plex.tv client: PINs, the signed-in user, and their resources (servers). JSON only
//! (`Accept: application/json`), one persisted client identifier for every call, the user's
//! token only ever in the `X-Plex-Token` header. Timeouts of 5 s to connect and 10 s in all;
//! an idempotent GET is retried once with jitter; 429 is reported with its Retry-After so the
//! caller backs off. An unreachable plex.tv is never reported as a denial.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

/// Largest body read from plex.tv (resource lists of busy accounts are the big ones).
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlexError {
    /// Timeout, connection failure, 5xx: try again later. Never a denial.
    #[error("plex.tv is not responding: {0}")]
    Unavailable(String),
    /// 429: wait this many seconds (if plex.tv said).
    #[error("plex.tv asks us to slow down")]
    RateLimited(Option<u64>),
    /// 401 (or 422 "invalid token"): the token is revoked or invalid.
    #[error("plex.tv did not accept the token")]
    Unauthorized,
    /// 404: the PIN is unknown or expired.
    #[error("not found at plex.tv")]
    NotFound,
    /// An answer we cannot read.
    #[error("unexpected answer from plex.tv: {0}")]
    Protocol(String),
}

/// A PIN as created by plex.tv.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    pub id: i64,
    pub code: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub auth_token: Option<String>,
}

/// The parts of `GET /api/v2/user` doorman uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlexUser {
    pub id: i64,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub thumb: Option<String>,
    #[serde(default)]
    pub confirmed: Option<bool>,
    #[serde(default)]
    pub restricted: Option<bool>,
}

/// One entry of `GET /api/v2/resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub client_identifier: Option<String>,
    /// Comma-separated: "server", "client,player,pubsub-player".
    #[serde(default)]
    pub provides: Option<String>,
    #[serde(default)]
    pub owned: Option<bool>,
    #[serde(default)]
    pub source_title: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl Resource {
    pub fn is_server(&self) -> bool {
        self.provides
            .as_deref()
            .unwrap_or("")
            .split(',')
            .any(|p| p.trim() == "server")
    }
}

/// plex.tv's public addresses, for when no [plex] table is configured (the CLI).
pub struct Defaults {
    pub api_base: Url,
    pub product: String,
    pub client_identifier: String,
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults {
            api_base: crate::config::PlexConfig::default_api_base(),
            product: "doorman".into(),
            client_identifier: "doorman-cli".into(),
        }
    }
}

#[derive(Clone)]
pub struct PlexClient {
    http: reqwest::Client,
    api_base: Url,
    client_identifier: String,
    product: String,
}

impl PlexClient {
    pub fn new(
        api_base: Url,
        client_identifier: String,
        product: String,
    ) -> Result<PlexClient, PlexError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("doorman/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PlexError::Protocol(e.to_string()))?;
        Ok(PlexClient {
            http,
            api_base,
            client_identifier,
            product,
        })
    }

    pub fn client_identifier(&self) -> &str {
        &self.client_identifier
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_base.as_str().trim_end_matches('/'), path)
    }

    fn headers(&self, token: Option<&str>) -> Result<HeaderMap, PlexError> {
        let mut h = HeaderMap::new();
        let value = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| PlexError::Protocol("a header value is not valid".into()))
        };
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert("X-Plex-Client-Identifier", value(&self.client_identifier)?);
        h.insert("X-Plex-Product", value(&self.product)?);
        h.insert(
            "X-Plex-Version",
            HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        h.insert("X-Plex-Device-Name", value(&self.product)?);
        if let Some(t) = token {
            h.insert("X-Plex-Token", value(t)?);
        }
        Ok(h)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, PlexError> {
        let retries = if method == Method::GET { 1 } else { 0 };
        let mut attempt = 0;
        loop {
            match self.once(method.clone(), path, token).await {
                Err(PlexError::Unavailable(reason)) if attempt < retries => {
                    attempt += 1;
                    let jitter = 100 + u64::from(rand::random::<u8>());
                    tracing::debug!(path, reason = %reason, "plex.tv call failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, PlexError> {
        let resp = self
            .http
            .request(method, self.url(path))
            .headers(self.headers(token)?)
            .send()
            .await
            .map_err(|e| PlexError::Unavailable(without_url(e)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = read_capped(resp).await?;
        match status {
            s if s.is_success() => {
                serde_json::from_slice(&body).map_err(|e| PlexError::Protocol(e.to_string()))
            }
            StatusCode::UNAUTHORIZED => Err(PlexError::Unauthorized),
            StatusCode::UNPROCESSABLE_ENTITY
                if String::from_utf8_lossy(&body).contains("Invalid token") =>
            {
                Err(PlexError::Unauthorized)
            }
            StatusCode::NOT_FOUND => Err(PlexError::NotFound),
            StatusCode::TOO_MANY_REQUESTS => Err(PlexError::RateLimited(retry_after)),
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                Err(PlexError::Unavailable(format!("HTTP {s}")))
            }
            s => Err(PlexError::Protocol(format!("HTTP {s}"))),
        }
    }

    /// `POST /api/v2/pins?strong=true`: a long code for a user who never types it.
    pub async fn create_pin(&self) -> Result<Pin, PlexError> {
        self.call(Method::POST, "/api/v2/pins?strong=true", None)
            .await
    }

    /// `GET /api/v2/pins/{id}`: `Some(token)` once the user approved; `NotFound` once expired.
    pub async fn check_pin(&self, id: i64) -> Result<Option<String>, PlexError> {
        let pin: Pin = self
            .call(Method::GET, &format!("/api/v2/pins/{id}"), None)
            .await?;
        Ok(pin.auth_token.filter(|t| !t.is_empty()))
    }

    pub async fn user(&self, token: &str) -> Result<PlexUser, PlexError> {
        self.call(Method::GET, "/api/v2/user", Some(token)).await
    }

    pub async fn resources(&self, token: &str) -> Result<Vec<Resource>, PlexError> {
        self.call(
            Method::GET,
            "/api/v2/resources?includeHttps=1&includeRelay=1",
            Some(token),
        )
        .await
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, PlexError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| PlexError::Unavailable(without_url(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(PlexError::Protocol("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's errors carry the URL; ours never contains a token, but keep logs short anyway.
fn without_url(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.without_url().to_string()
    }
}

/// The Plex Auth App address for a PIN (`#?` form; the fragment never reaches a server).
pub fn auth_app_url(
    auth_app: &Url,
    client_identifier: &str,
    code: &str,
    product: &str,
    forward_url: &str,
) -> String {
    let pairs: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("clientID", client_identifier)
        .append_pair("code", code)
        .append_pair("context[device][product]", product)
        .append_pair("forwardUrl", forward_url)
        .finish();
    format!("{}#?{}", auth_app.as_str().trim_end_matches('/'), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_leniently_and_provides_is_split() {
        let json = r#"[
          {"name":"Home","product":"Plex Media Server","clientIdentifier":"SRV1","provides":"server","owned":false,"sourceTitle":"owner","accessToken":"srv-token","connections":[]},
          {"name":"Phone","provides":"client,player,pubsub-player","owned":true,"accessToken":null},
          {"clientIdentifier":"X"}
        ]"#;
        let r: Vec<Resource> = serde_json::from_str(json).unwrap();
        assert!(r[0].is_server());
        assert!(!r[1].is_server());
        assert!(!r[2].is_server());
    }

    #[test]
    fn auth_url_has_the_fragment_form() {
        let u = auth_app_url(
            &Url::parse("https://app.plex.tv/auth").unwrap(),
            "cid",
            "abc",
            "doorman",
            "https://id.example/login/plex/done",
        );
        assert!(u.starts_with("https://app.plex.tv/auth#?clientID=cid&code=abc&context%5Bdevice%5D%5Bproduct%5D=doorman&forwardUrl=https%3A%2F%2Fid.example"));
    }
}
