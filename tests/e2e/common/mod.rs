//! The end-to-end harness: a real doorman server on a free local port (in this process, on a
//! temporary data directory, with a `ManualClock` the test moves), a fixed set of clients and
//! users, and a small cookie-keeping "browser" that never follows redirects.

#![allow(dead_code)]

pub mod authenticator;
pub mod fake_cloudflare;
pub mod fake_plex;
pub mod prosody;
pub mod proxies;
pub mod smtp;
pub mod webauthn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use doorman::accounts::{password, users, NewUser};
use doorman::clock::ManualClock;
use doorman::server::{self, Running};
use doorman::state::AppState;
use reqwest::cookie::CookieStore;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

// ---------------------------------------------------------------------------------------------
// The fixed clients and users

pub const RP: &str = "rp";
pub const RP_SECRET: &str = "rp-secret-0123456789";
pub const RP_REDIRECT: &str = "http://127.0.0.1:1/cb";
pub const RP_LOGOUT_REDIRECT: &str = "http://127.0.0.1:1/bye";

pub const SPA: &str = "spa";
pub const SPA_REDIRECT: &str = "http://127.0.0.1:1/spa";

pub const ADMINS_ONLY: &str = "admins-only";
pub const ADMINS_ONLY_SECRET: &str = "admins-only-secret-0123";
pub const ADMINS_ONLY_REDIRECT: &str = "http://127.0.0.1:1/admins";

pub const NC: &str = "nc";
pub const NC_SECRET: &str = "nc-secret-0123456789";
pub const NC_REDIRECT: &str = "http://127.0.0.1:1/nc";

pub const BASIC_ONLY: &str = "basic-only";
pub const BASIC_ONLY_SECRET: &str = "basic-only-secret-0123";
pub const BASIC_ONLY_REDIRECT: &str = "http://127.0.0.1:1/basic";

pub const SPECIAL: &str = "special";
pub const SPECIAL_SECRET: &str = "s3cr+t/with=special&chars";
pub const SPECIAL_REDIRECT: &str = "http://127.0.0.1:1/special";

pub const ALICE: &str = "alice";
pub const ALICE_PASSWORD: &str = "alice-password";
pub const ALICE_EMAIL: &str = "alice@example.com";
pub const BOB: &str = "bob";
pub const BOB_PASSWORD: &str = "bob-password";

/// The `[[clients]]` every test server has (after the test's own TOML).
pub const CLIENTS_TOML: &str = r#"
[[clients]]
id = "rp"
name = "Relying Party"
secret = "rp-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/cb"]
post_logout_redirect_uris = ["http://127.0.0.1:1/bye"]
refresh_tokens = false

[[clients]]
id = "spa"
public = true
redirect_uris = ["http://127.0.0.1:1/spa"]
token_endpoint_auth_method = "none"

[[clients]]
id = "admins-only"
secret = "admins-only-secret-0123"
redirect_uris = ["http://127.0.0.1:1/admins"]
allowed_groups = ["admins"]

[[clients]]
id = "nc"
secret = "nc-secret-0123456789"
redirect_uris = ["http://127.0.0.1:1/nc"]
id_token_claims = "all"

[[clients]]
id = "basic-only"
secret = "basic-only-secret-0123"
redirect_uris = ["http://127.0.0.1:1/basic"]
token_endpoint_auth_method = "client_secret_basic"

[[clients]]
id = "special"
secret = "s3cr+t/with=special&chars"
redirect_uris = ["http://127.0.0.1:1/special"]
"#;

/// Secret and registered redirect URI of a fixed client (secret None for the public one).
pub fn client_info(client: &str) -> (Option<&'static str>, &'static str) {
    match client {
        RP => (Some(RP_SECRET), RP_REDIRECT),
        SPA => (None, SPA_REDIRECT),
        ADMINS_ONLY => (Some(ADMINS_ONLY_SECRET), ADMINS_ONLY_REDIRECT),
        NC => (Some(NC_SECRET), NC_REDIRECT),
        BASIC_ONLY => (Some(BASIC_ONLY_SECRET), BASIC_ONLY_REDIRECT),
        SPECIAL => (Some(SPECIAL_SECRET), SPECIAL_REDIRECT),
        other => panic!("unknown test client {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// A free local port: bind port 0, read it, let it go.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce_pair() -> (String, String) {
    let verifier = format!("{}-{}", random_string(), random_string());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn random_string() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The query parameters of a URL, as a map (last one wins).
pub fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The claims of a JWT, unverified (for tests that only look at claims).
pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWT, unverified.
pub fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// `Authorization: Basic` with id and secret form-urlencoded first (RFC 6749 §2.3.1).
pub fn basic_auth(client: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(client), enc(secret)))
    )
}

/// `Authorization: Basic` with the raw id and secret (what Cloudflare Access sends).
pub fn basic_auth_raw(client: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client}:{secret}")))
}

/// Decodes the HTML entities minijinja writes in attribute values.
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The (unescaped) value of the `attr` attribute in the first tag that contains `marker`.
fn attr_in_tag(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let start = html[..=at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let needle = format!(" {attr}=\"");
    let v = tag.find(&needle)? + needle.len();
    let len = tag[v..].find('"')?;
    Some(html_unescape(&tag[v..v + len]))
}

/// The value of the `<input name="NAME" value="...">` in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    attr_in_tag(html, &format!("name=\"{name}\""), "value")
}

/// The `action` of the first form in `html`.
pub fn form_action(html: &str) -> Option<String> {
    attr_in_tag(html, "<form", "action")
}

/// The sign-in form of a login page.
#[derive(Debug, Clone)]
pub struct LoginForm {
    pub action: String,
    pub flow: String,
    pub csrf: String,
}

impl LoginForm {
    /// The password form of a login page (which may have other forms before it).
    pub fn parse(html: &str) -> Option<LoginForm> {
        let password_at = html.find("name=\"password\"")?;
        let form_at = html[..password_at].rfind("<form")?;
        let form = &html[form_at..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        Some(LoginForm {
            action: form_action(form)?,
            flow: input_value(form, "flow")?,
            csrf: input_value(form, "csrf")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A response read to the end.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub url: Url,
}

impl Page {
    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let url = resp.url().clone();
        let text = resp.text().await.unwrap();
        Page {
            status,
            headers,
            text,
            url,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Location header, resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        self.header("location").map(|l| self.url.join(l).unwrap())
    }

    /// The Location header, which must be there.
    pub fn redirect(&self) -> Url {
        self.location().unwrap_or_else(|| {
            panic!(
                "expected a redirect, got {} with body:\n{}",
                self.status, self.text
            )
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "expected JSON ({e}), got {} with body:\n{}",
                self.status, self.text
            )
        })
    }

    /// The `error` of a JSON OAuth error.
    pub fn oauth_error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn is_html(&self) -> bool {
        self.content_type().starts_with("text/html")
    }

    pub fn login_form(&self) -> Option<LoginForm> {
        if self.is_html() {
            LoginForm::parse(&self.text)
        } else {
            None
        }
    }

    /// Every Set-Cookie header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// Whether a response sets (not clears) the cookie `name`.
    pub fn sets_cookie(&self, name: &str) -> bool {
        self.set_cookies().iter().any(|c| {
            c.strip_prefix(&format!("{name}="))
                .is_some_and(|rest| !rest.starts_with(';') && !rest.is_empty())
        })
    }

    pub fn assert_status(&self, status: u16) -> &Page {
        assert_eq!(
            self.status, status,
            "unexpected status; headers {:?}; body:\n{}",
            self.headers, self.text
        );
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A cookie-keeping HTTP client that never follows redirects.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        Browser { http, jar }
    }

    pub async fn get(&self, url: &str) -> Page {
        Page::read(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        Page::read(self.http.post(url).form(fields).send().await.unwrap()).await
    }

    /// A form POST with extra request headers (e.g. X-Forwarded-For).
    pub async fn post_form_with(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.post(url).form(fields);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Page::read(req.send().await.unwrap()).await
    }

    /// Submits the login form of `page` with these credentials and extra headers.
    pub async fn submit_login_with(
        &self,
        page: &Page,
        user: &str,
        pass: &str,
        headers: &[(&str, &str)],
    ) -> Page {
        let form = page.login_form().unwrap_or_else(|| {
            panic!(
                "expected a login page, got {} with body:\n{}",
                page.status, page.text
            )
        });
        self.post_form_with(
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", user),
                ("password", pass),
            ],
            headers,
        )
        .await
    }

    /// The value of a cookie this browser would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// Sets a cookie as if `url` had sent it.
    pub fn set_cookie(&self, url: &str, cookie: &str) {
        let url = Url::parse(url).unwrap();
        self.jar
            .set_cookies(&mut [HeaderValue::from_str(cookie).unwrap()].iter(), &url);
    }

    /// Submits the login form of `page` with these credentials.
    pub async fn submit_login(&self, page: &Page, user: &str, pass: &str) -> Page {
        let form = page.login_form().unwrap_or_else(|| {
            panic!(
                "expected a login page, got {} with body:\n{}",
                page.status, page.text
            )
        });
        self.post_form(
            &form.action,
            &[
                ("flow", &form.flow),
                ("csrf", &form.csrf),
                ("username", user),
                ("password", pass),
            ],
        )
        .await
    }

    /// Opens `auth_url`, signs in on the login page, and returns where the 303 sends the browser.
    pub async fn login(&self, auth_url: &str, user: &str, pass: &str) -> Url {
        let page = self.get(auth_url).await;
        page.assert_status(200);
        let done = self.submit_login(&page, user, pass).await;
        assert_eq!(
            done.status, 303,
            "sign-in did not redirect; body:\n{}",
            done.text
        );
        done.redirect()
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// Options for a test server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// TOML inserted after the top-level keys and before the fixed clients.
    pub extra_toml: String,
    /// A path for the issuer, e.g. "/auth".
    pub issuer_path: Option<String>,
    /// The whole issuer, instead of `http://127.0.0.1:PORT` + path (e.g. an https one, as
    /// behind a TLS-terminating proxy); use with `port`.
    pub issuer_override: Option<String>,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
}

/// A provider reached over HTTP: its issuer and the helpers a relying party needs. Works for
/// the in-process `TestServer` (through Deref) and for the binary alike.
#[derive(Clone)]
pub struct Idp {
    /// The issuer: `http://127.0.0.1:PORT` plus the optional path; every endpoint is under it.
    pub base: String,
    /// Back-channel HTTP client (token, userinfo, ...): no cookies, no redirects.
    pub http: reqwest::Client,
}

pub struct TestServer {
    pub idp: Idp,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    pub port: u16,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub dir: Arc<tempfile::TempDir>,
    config_text: String,
    running: Option<Running>,
}

impl std::ops::Deref for TestServer {
    type Target = Idp;
    fn deref(&self) -> &Idp {
        &self.idp
    }
}

pub fn config_text(port: u16, data_dir: &Path, opts: &Options) -> String {
    let issuer = opts.issuer_override.clone().unwrap_or_else(|| {
        format!(
            "http://127.0.0.1:{port}{}",
            opts.issuer_path.as_deref().unwrap_or("")
        )
    });
    format!(
        "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = '{dir}'\n{extra}\n{clients}",
        dir = data_dir.display(),
        extra = opts.extra_toml,
        clients = CLIENTS_TOML,
    )
}

impl TestServer {
    /// A server with the fixed clients, alice and bob, and `extra_toml` in its config.
    pub async fn start(extra_toml: &str) -> TestServer {
        TestServer::start_with(Options {
            extra_toml: extra_toml.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        for attempt in 0.. {
            let port = opts.port.unwrap_or_else(free_port);
            let text = config_text(port, dir.path(), &opts);
            match TestServer::boot(dir.clone(), port, text, Arc::new(ManualClock::default())).await
            {
                Ok(server) => {
                    server.create_default_users().await;
                    return server;
                }
                // Another test took the port between our probe and our bind: try another.
                Err(server::StartError::Listen { .. }) if attempt < 20 => continue,
                Err(e) => panic!("the test server did not start: {e}"),
            }
        }
        unreachable!()
    }

    async fn boot(
        dir: Arc<tempfile::TempDir>,
        port: u16,
        text: String,
        clock: Arc<ManualClock>,
    ) -> Result<TestServer, server::StartError> {
        let config = doorman::config::from_str(&text, &HashMap::new(), dir.path())
            .unwrap_or_else(|e| panic!("invalid test config:\n{e}\n---\n{text}"));
        let issuer = config.issuer_str().to_string();
        let store = server::open_store(&config).await?;
        let state = server::build_state(config, store, clock.clone()).await?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let running = server::start(state.clone(), addr).await?;
        Ok(TestServer {
            idp: Idp::new(issuer),
            origin: format!("http://127.0.0.1:{port}"),
            port,
            clock,
            state,
            dir,
            config_text: text,
            running: Some(running),
        })
    }

    async fn create_default_users(&self) {
        let params = password::owasp_params().unwrap();
        let (pa, pb) = tokio::task::spawn_blocking(move || {
            (
                password::hash_blocking(&params, ALICE_PASSWORD).unwrap(),
                password::hash_blocking(&params, BOB_PASSWORD).unwrap(),
            )
        })
        .await
        .unwrap();
        let now = self.now();
        users::create(
            &*self.state.store,
            NewUser {
                username: ALICE.into(),
                email: Some(ALICE_EMAIL.into()),
                email_verified: true,
                name: Some("Alice Liddell".into()),
                groups: vec!["admins".into()],
                password_hash: Some(pa),
            },
            now,
        )
        .await
        .unwrap();
        users::create(
            &*self.state.store,
            NewUser {
                username: BOB.into(),
                email: None,
                email_verified: false,
                name: None,
                groups: vec![],
                password_hash: Some(pb),
            },
            now,
        )
        .await
        .unwrap();
    }

    pub fn now(&self) -> i64 {
        doorman::clock::Clock::now(&*self.clock)
    }

    /// Stops serving (the data directory stays).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Stops this server and starts a new one on the same port, config and data directory (a
    /// new process would see exactly this: the same database, nothing in memory).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last = None;
        for _ in 0..50 {
            match TestServer::boot(
                self.dir.clone(),
                self.port,
                self.config_text.clone(),
                Arc::new(ManualClock::default()),
            )
            .await
            {
                Ok(s) => {
                    *self = s;
                    return;
                }
                Err(e @ server::StartError::Listen { .. }) => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
        panic!("restart could not bind port {}: {last:?}", self.port);
    }
}

impl Idp {
    pub fn new(base: String) -> Idp {
        Idp {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An authorization request URL. `extra` params are appended as given.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize_url(
        &self,
        client: &str,
        redirect: &str,
        scope: &str,
        state: &str,
        nonce: Option<&str>,
        pkce_challenge: Option<&str>,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = Url::parse(&self.url("/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", client)
                .append_pair("redirect_uri", redirect)
                .append_pair("scope", scope)
                .append_pair("state", state);
            if let Some(n) = nonce {
                q.append_pair("nonce", n);
            }
            if let Some(c) = pkce_challenge {
                q.append_pair("code_challenge", c)
                    .append_pair("code_challenge_method", "S256");
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }

    /// A standard request for one of the fixed clients, with PKCE.
    pub fn auth_request(&self, client: &str, scope: &str) -> AuthRequest {
        let (_, redirect) = client_info(client);
        let (verifier, challenge) = pkce_pair();
        let state = random_string();
        let nonce = random_string();
        let url = self.authorize_url(
            client,
            redirect,
            scope,
            &state,
            Some(&nonce),
            Some(&challenge),
            &[],
        );
        AuthRequest {
            client: client.to_string(),
            redirect: redirect.to_string(),
            url,
            state,
            nonce,
            verifier,
        }
    }

    // ---- back channel ----

    /// POST /token with Basic client authentication.
    pub async fn token_basic(&self, client: &str, secret: &str, form: &[(&str, &str)]) -> Page {
        self.post_with_auth("/token", Some(basic_auth(client, secret)), form)
            .await
    }

    /// POST to an endpoint with an optional Authorization header and a form body.
    pub async fn post_with_auth(
        &self,
        path: &str,
        authorization: Option<String>,
        form: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        Page::read(req.send().await.unwrap()).await
    }

    /// Redeems a code as `client` (Basic for confidential clients, client_id for public ones).
    pub async fn redeem(
        &self,
        client: &str,
        code: &str,
        redirect: &str,
        verifier: Option<&str>,
    ) -> Page {
        let (secret, _) = client_info(client);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        match secret {
            Some(s) => self.token_basic(client, s, &form).await,
            None => {
                form.push(("client_id", client));
                self.post_with_auth("/token", None, &form).await
            }
        }
    }

    /// Uses a refresh token as `client`.
    pub async fn refresh(&self, client: &str, refresh_token: &str) -> Page {
        let (secret, _) = client_info(client);
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        match secret {
            Some(s) => self.token_basic(client, s, &form).await,
            None => {
                form.push(("client_id", client));
                self.post_with_auth("/token", None, &form).await
            }
        }
    }

    /// GET /userinfo with a Bearer token.
    pub async fn userinfo(&self, access_token: &str) -> Page {
        let resp = self
            .http
            .get(self.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        Page::read(resp).await
    }

    /// Runs the whole code flow for `client` in `browser` (signing in as `user` if the browser
    /// has no session) and redeems the code.
    pub async fn code_flow(
        &self,
        browser: &Browser,
        client: &str,
        scope: &str,
        user: &str,
        pass: &str,
    ) -> Tokens {
        let req = self.auth_request(client, scope);
        let code = req.code(self, browser, user, pass).await;
        let page = self
            .redeem(client, &code, &req.redirect, Some(&req.verifier))
            .await;
        page.assert_status(200);
        let json = page.json();
        Tokens::from_json(json, code)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Running has no Drop; tell the server task to stop so it does not outlive the test.
        if let (Some(r), Ok(rt)) = (self.running.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(r.stop());
        }
    }
}

/// An authorization request made by `TestServer::auth_request`.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: String,
    pub redirect: String,
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl AuthRequest {
    /// The code, after signing in if the browser has no session; checks state and iss.
    pub async fn code(&self, server: &Idp, browser: &Browser, user: &str, pass: &str) -> String {
        let first = browser.get(&self.url).await;
        let back = match first.status {
            302 => first.redirect(),
            200 => {
                let done = browser.submit_login(&first, user, pass).await;
                assert_eq!(done.status, 303, "sign-in failed:\n{}", done.text);
                done.redirect()
            }
            s => panic!("authorize answered {s}:\n{}", first.text),
        };
        assert!(
            back.as_str().starts_with(&self.redirect),
            "sent to {back} instead of {}",
            self.redirect
        );
        let q = query(&back);
        assert_eq!(q.get("state"), Some(&self.state), "{back}");
        assert_eq!(q.get("iss"), Some(&server.base), "{back}");
        q.get("code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .clone()
    }
}

/// A token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub code: String,
    pub json: Value,
}

impl Tokens {
    pub fn from_json(json: Value, code: String) -> Tokens {
        Tokens {
            access_token: json["access_token"].as_str().unwrap().to_string(),
            id_token: json["id_token"].as_str().unwrap_or_default().to_string(),
            refresh_token: json["refresh_token"].as_str().map(str::to_string),
            code,
            json,
        }
    }

    pub fn id_claims(&self) -> Value {
        jwt_claims(&self.id_token)
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary as a child process

/// The `doorman` binary with an empty environment (PATH only), run from the crate root, so
/// nothing leaks in from the host.
pub fn doorman_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"));
    c.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `cmd` with `stdin` piped in (not a terminal) and collects its output.
pub fn output_with_stdin(mut cmd: std::process::Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
