//! A fake Cloudflare Access team domain (cloudflare-access-and-forward-auth.md §1) on a free
//! local port: `GET /cdn-cgi/access/certs` in Cloudflare's shape (`keys` as RS256 JWKs with
//! 64-hex-char kids, `public_cert` for the current key, `public_certs` for all of them), with
//! RSA keys generated in the test, and a `mint` that signs Access tokens as Cloudflare does
//! (header `{alg: RS256, kid, typ: JWT}`).
//!
//! The test drives the fake through plain methods: rotate (publish a new key and keep the
//! previous one), remove a key, make the endpoint fail (500), hang or drop the connection, delay
//! it, and count the fetches. Every response says `Connection: close`, so each fetch doorman
//! makes is a new connection the fake sees (and can drop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::random_string;

pub const CERTS_PATH: &str = "/cdn-cgi/access/certs";

/// How the certs endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertsMode {
    /// The document, 200.
    Serve,
    /// 500 with a small HTML body, as an edge error page would.
    Fail,
    /// Holds the request until the mode changes (then answers 500).
    Hang,
    /// Accepts the connection and closes it without a word.
    Close,
}

/// One RSA key of the fake.
#[derive(Clone)]
pub struct FakeKey {
    /// 64 hex chars, as Cloudflare's.
    pub kid: String,
    /// The public key (SubjectPublicKeyInfo) as PEM.
    pub public_pem: String,
    /// base64url modulus and exponent.
    pub n: String,
    pub e: String,
    encoding: EncodingKey,
}

impl FakeKey {
    /// A fresh RSA-2048 key (doorman's own generator, so the PEM is what jsonwebtoken expects).
    pub fn generate() -> FakeKey {
        let signing = doorman::keys::generate(0).expect("RSA key generation");
        let encoding = EncodingKey::from_rsa_pem(signing.private_pem.as_bytes()).unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        let jwk = serde_json::to_value(&jwk).unwrap();
        let der: String = signing
            .private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(der).unwrap();
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        FakeKey {
            kid: hex(&Sha256::digest(spki.as_ref())),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            n: jwk["n"].as_str().unwrap().to_string(),
            e: jwk["e"].as_str().unwrap().to_string(),
            encoding,
        }
    }

    pub fn jwk(&self) -> Value {
        json!({
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "e": self.e,
            "n": self.n,
        })
    }

    /// The `{kid, cert}` entry. Cloudflare puts an X.509 certificate here; doorman reads only
    /// `keys`, so the fake wraps the public key in a CERTIFICATE armour to keep the shape.
    pub fn cert_entry(&self) -> Value {
        json!({
            "kid": self.kid,
            "cert": self.public_pem.replace("PUBLIC KEY", "CERTIFICATE"),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A random 64-hex-char tag (an AUD or a kid nobody publishes).
pub fn hex64() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex(&b)
}

struct Shared {
    /// Published, oldest first; the last one is the current key.
    published: Vec<String>,
    mode: CertsMode,
    delay: Duration,
    /// Certs requests (and connections, in `Close` mode) that arrived.
    fetches: usize,
    /// Certs documents fully answered with 200.
    served: usize,
}

/// The fake team domain.
pub struct FakeCloudflare {
    /// `http://127.0.0.1:PORT`: the team domain, and the `iss` of every token it mints.
    pub base: String,
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    /// Every key the fake ever made, published or not (tokens can be minted with any); shared
    /// with the certs handler.
    keys: Arc<Mutex<HashMap<String, FakeKey>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drops connections while the mode is `Close`; otherwise hands them to axum.
struct Listener {
    inner: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
}

impl axum::serve::Listener for Listener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            {
                let mut s = lock(&self.shared);
                if s.mode == CertsMode::Close {
                    s.fetches += 1;
                    drop(stream);
                    continue;
                }
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct App {
    shared: Arc<Mutex<Shared>>,
    keys: Arc<Mutex<HashMap<String, FakeKey>>>,
}

async fn certs(State(app): State<Arc<App>>) -> Response {
    let (mode, delay) = {
        let mut s = lock(&app.shared);
        s.fetches += 1;
        (s.mode, s.delay)
    };
    let close = [(header::CONNECTION, "close")];
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match mode {
        CertsMode::Serve => {}
        CertsMode::Fail | CertsMode::Close => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                close,
                "<html><body>500 Internal Server Error</body></html>",
            )
                .into_response()
        }
        CertsMode::Hang => {
            while lock(&app.shared).mode == CertsMode::Hang {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return (StatusCode::INTERNAL_SERVER_ERROR, close, "").into_response();
        }
    }
    let doc = {
        let mut s = lock(&app.shared);
        s.served += 1;
        let keys = app.keys.lock().unwrap();
        document(&s.published, &keys)
    };
    (close, axum::Json(doc)).into_response()
}

fn document(published: &[String], keys: &HashMap<String, FakeKey>) -> Value {
    let keys: Vec<&FakeKey> = published.iter().filter_map(|k| keys.get(k)).collect();
    json!({
        "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>(),
        "public_cert": keys.last().map(|k| k.cert_entry()).unwrap_or(Value::Null),
        "public_certs": keys.iter().map(|k| k.cert_entry()).collect::<Vec<_>>(),
    })
}

impl FakeCloudflare {
    /// A fake with one published key.
    pub async fn start() -> FakeCloudflare {
        let first = FakeKey::generate();
        let shared = Arc::new(Mutex::new(Shared {
            published: vec![first.kid.clone()],
            mode: CertsMode::Serve,
            delay: Duration::ZERO,
            fetches: 0,
            served: 0,
        }));
        let keys = Arc::new(Mutex::new(HashMap::from([(first.kid.clone(), first)])));
        let app = Arc::new(App {
            shared: shared.clone(),
            keys: keys.clone(),
        });
        let router = Router::new().route(CERTS_PATH, get(certs)).with_state(app);
        let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = inner.local_addr().unwrap().port();
        let listener = Listener {
            inner,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeCloudflare {
            base: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            keys,
            task,
        }
    }

    /// The team domain (no trailing slash), i.e. the `iss` doorman expects.
    pub fn team_domain(&self) -> String {
        self.base.clone()
    }

    pub fn certs_url(&self) -> String {
        format!("{}{CERTS_PATH}", self.base)
    }

    /// The current (newest published) key's kid.
    pub fn current_kid(&self) -> String {
        lock(&self.shared).published.last().cloned().unwrap()
    }

    /// The published kids, oldest first.
    pub fn published(&self) -> Vec<String> {
        lock(&self.shared).published.clone()
    }

    /// A new key the fake can sign with but does not publish (yet).
    pub fn add_key(&self) -> String {
        let key = FakeKey::generate();
        let kid = key.kid.clone();
        self.keys.lock().unwrap().insert(kid.clone(), key);
        kid
    }

    /// Cloudflare's rotation: a new current key, the previous one still published.
    pub fn rotate(&self) -> String {
        let kid = self.add_key();
        let mut s = lock(&self.shared);
        s.published.push(kid.clone());
        let len = s.published.len();
        if len > 2 {
            s.published.drain(..len - 2);
        }
        kid
    }

    pub fn publish(&self, kid: &str) {
        let mut s = lock(&self.shared);
        if !s.published.iter().any(|k| k == kid) {
            s.published.push(kid.to_string());
        }
    }

    /// Stops publishing `kid` (the fake can still sign with it).
    pub fn remove(&self, kid: &str) {
        lock(&self.shared).published.retain(|k| k != kid);
    }

    pub fn set_mode(&self, mode: CertsMode) {
        lock(&self.shared).mode = mode;
    }

    /// Every certs request waits this long before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared).delay = delay;
    }

    /// Certs requests (or dropped connections) so far.
    pub fn fetches(&self) -> usize {
        lock(&self.shared).fetches
    }

    /// Certs documents served (200) so far.
    pub fn served(&self) -> usize {
        lock(&self.shared).served
    }

    /// Waits until at least `n` documents were served (doorman fetches at start).
    pub async fn wait_served(&self, n: usize) {
        for _ in 0..500 {
            if self.served() >= n {
                // Let doorman store what it just read.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the certs endpoint served {} documents, expected {n}",
            self.served()
        );
    }

    /// The document as the endpoint serves it now.
    pub fn document(&self) -> Value {
        let published = self.published();
        document(&published, &self.keys.lock().unwrap())
    }

    pub fn key(&self, kid: &str) -> FakeKey {
        self.keys
            .lock()
            .unwrap()
            .get(kid)
            .cloned()
            .unwrap_or_else(|| panic!("the fake has no key {kid}"))
    }

    /// An RS256 token over `claims`, signed by the key `kid`, with Cloudflare's header.
    pub fn mint(&self, claims: &Value, kid: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.to_string());
        h.typ = Some("JWT".into());
        self.mint_with(&h, claims, kid)
    }

    /// A token with this header (any RSA algorithm), signed by the key `kid`.
    pub fn mint_with(&self, header: &Header, claims: &Value, kid: &str) -> String {
        let key = self.key(kid);
        jsonwebtoken::encode(header, claims, &key.encoding).unwrap()
    }

    /// An identity token for `email` as Cloudflare issues it, valid for a minute from `now`.
    pub fn identity_claims(&self, aud: &str, email: &str, now: i64) -> Value {
        json!({
            "aud": [aud],
            "email": email,
            "exp": now + 60,
            "iat": now,
            "nbf": now,
            "iss": self.team_domain(),
            "type": "app",
            "identity_nonce": random_string(),
            "sub": "7335d417-61da-459d-899c-0a01c76a2f94",
            "country": "NL",
        })
    }

    /// A service token for `client_id`: `common_name`, an empty `sub`, no email.
    pub fn service_claims(&self, aud: &str, client_id: &str, now: i64) -> Value {
        json!({
            "aud": [aud],
            "common_name": client_id,
            "exp": now + 60,
            "iat": now,
            "nbf": now,
            "iss": self.team_domain(),
            "type": "app",
            "identity_nonce": random_string(),
            "sub": "",
        })
    }
}

/// `base64url(header).base64url(payload).` with no signature (`alg: none` and friends).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
