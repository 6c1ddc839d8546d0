//! A fake plex.tv (plex.md §6) on a free local port, one per test, and the helpers that run a
//! doorman against it. It serves both the API (`api_base`) and a stand-in for the Auth App
//! (`auth_app_url` = `{base}/auth`), so doorman's real client code runs end to end.
//!
//! The test and the server share one state in-process: the test drives the fake through plain
//! methods on `FakePlex` (approve a PIN, move the fake's clock, revoke a token, toggle the
//! share of SRV1, inject faults) and reads its request log. The only HTTP control route is
//! `POST /__fake/approve`, which the Auth App page's script calls.
//!
//! Seed data: server `SRV1`; accounts `owner` (owns SRV1), `alice` (friend, SRV1 shared, plus
//! her own player), `bob` (friend, no share), `kid` (managed Home user: `restricted`, no email,
//! empty username, title "Kid", SRV1 shared) and `eve` (a stranger).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{input_value, query, Browser, Page, TestServer};

/// The machineIdentifier of the one seeded Plex Media Server.
pub const SRV1: &str = "SRV1";
/// PIN ids start above 2^31, as real ones do (they must be stored as i64).
pub const FIRST_PIN_ID: i64 = (1 << 31) + 4242;
/// A fixed `secret_key` for test servers (tokens are sealed with it).
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef-test";

/// The fake's seeded accounts, by name.
pub const OWNER: &str = "owner";
pub const P_ALICE: &str = "alice";
pub const P_BOB: &str = "bob";
pub const KID: &str = "kid";
pub const EVE: &str = "eve";

/// The plex.tv account token of a seeded account.
pub fn account_token(name: &str) -> String {
    format!("{name}-account-token")
}

/// The per-server `accessToken` of SRV1 for a seeded account (owner, alice, kid).
pub fn server_token(name: &str) -> String {
    format!("srv1-{name}-token")
}

/// One plex.tv account of the fake.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub id: i64,
    pub uuid: String,
    pub username: String,
    pub title: String,
    pub friendly_name: Option<String>,
    pub email: Option<String>,
    /// The email is confirmed.
    pub confirmed: bool,
    pub restricted: bool,
    pub home: bool,
    /// Owns SRV1.
    pub owner: bool,
    /// SRV1 is shared with this account (for the owner: irrelevant).
    pub shared: bool,
    /// Is a friend of the owner.
    pub friend: bool,
    pub token: String,
    pub revoked: bool,
}

impl Account {
    pub fn thumb(&self) -> String {
        format!("https://plex.tv/users/{}/avatar?c=1700000000", self.uuid)
    }
}

fn seed_accounts() -> Vec<Account> {
    let acct = |name: &str, id: i64, owner: bool, shared: bool, friend: bool| Account {
        name: name.into(),
        id,
        uuid: format!("{:016x}", 0xdae3_43c1_f45b_0000_u64 + id as u64),
        username: name.into(),
        title: name.into(),
        friendly_name: Some(format!("{}{} Plex", &name[..1].to_uppercase(), &name[1..])),
        email: Some(format!("{name}@plex.example")),
        confirmed: true,
        restricted: false,
        home: owner,
        owner,
        shared,
        friend,
        token: account_token(name),
        revoked: false,
    };
    let mut kid = acct(KID, 1004, false, true, false);
    kid.username = String::new();
    kid.title = "Kid".into();
    kid.friendly_name = None;
    kid.email = None;
    kid.confirmed = false;
    kid.restricted = true;
    kid.home = true;
    vec![
        acct(OWNER, 1001, true, false, false),
        acct(P_ALICE, 1002, false, true, true),
        acct(P_BOB, 1003, false, false, true),
        kid,
        acct(EVE, 1005, false, false, false),
    ]
}

/// A PIN as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakePin {
    pub id: i64,
    pub code: String,
    pub client_id: String,
    pub strong: bool,
    pub created_at: i64,
    pub expires_at: i64,
    /// The approving account's token, once approved.
    pub auth_token: Option<String>,
    pub approved_by: Option<String>,
}

/// One request the fake saw (the control route excluded).
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `Accept` and every `X-Plex-*` header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub status: u16,
    pub at: Instant,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A PIN poll (`GET /api/v2/pins/{id}`).
    pub fn is_pin_poll(&self) -> bool {
        self.method == "GET" && self.path.starts_with("/api/v2/pins/")
    }
}

#[derive(Debug, Clone)]
struct Fault {
    path_prefix: String,
    status: u16,
    times: u32,
    retry_after: Option<u64>,
    delay_ms: u64,
}

/// How long the fake waits before sending a faulty answer (set on the response by `route`).
#[derive(Debug, Clone, Copy)]
struct FaultDelay(u64);

#[derive(Debug)]
struct Inner {
    accounts: Vec<Account>,
    pins: HashMap<i64, FakePin>,
    next_pin_id: i64,
    clock_offset: i64,
    pin_lifetime: i64,
    next_user: Option<String>,
    faults: Vec<Fault>,
    requests: Vec<Logged>,
}

impl Inner {
    fn now(&self) -> i64 {
        let real = doorman::clock::Clock::now(&doorman::clock::SystemClock);
        real + self.clock_offset
    }

    fn account_by_token(&self, token: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.token == token && !a.revoked)
    }

    fn approve(&mut self, pin: Option<i64>, code: Option<&str>, user: &str) -> Result<i64, String> {
        let token = self
            .accounts
            .iter()
            .find(|a| a.name == user)
            .map(|a| a.token.clone())
            .ok_or_else(|| format!("no account {user:?} at the fake"))?;
        let now = self.now();
        let pin = self
            .pins
            .values_mut()
            .find(|p| Some(p.id) == pin || Some(p.code.as_str()) == code)
            .ok_or_else(|| "no such PIN".to_string())?;
        if now >= pin.expires_at {
            return Err("the PIN has expired".into());
        }
        pin.auth_token = Some(token);
        pin.approved_by = Some(user.to_string());
        Ok(pin.id)
    }
}

/// A running fake plex.tv. Dropping it stops the server.
pub struct FakePlex {
    /// `http://127.0.0.1:PORT`: doorman's `plex.api_base`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePlex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePlex {
    pub async fn start() -> FakePlex {
        let inner = Arc::new(Mutex::new(Inner {
            accounts: seed_accounts(),
            pins: HashMap::new(),
            next_pin_id: FIRST_PIN_ID,
            clock_offset: 0,
            pin_lifetime: 1800,
            next_user: None,
            faults: Vec::new(),
            requests: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakePlex { base, inner, task }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// doorman's `plex.auth_app_url`.
    pub fn auth_app_url(&self) -> String {
        format!("{}/auth", self.base)
    }

    /// The `[plex]` keys that point doorman at this fake.
    pub fn plex_toml(&self) -> String {
        format!(
            "servers = [\"{SRV1}\"]\napi_base = \"{}\"\nauth_app_url = \"{}\"\nrecheck_after = \"1h\"\n",
            self.base,
            self.auth_app_url()
        )
    }

    pub fn account(&self, name: &str) -> Account {
        self.lock()
            .accounts
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no account {name} at the fake"))
    }

    /// Approves the PIN with this code as `user` (what the user does in the Auth App).
    pub fn approve(&self, code: &str, user: &str) {
        self.lock()
            .approve(None, Some(code), user)
            .unwrap_or_else(|e| panic!("approve {code} as {user}: {e}"));
    }

    pub fn approve_pin(&self, pin_id: i64, user: &str) {
        self.lock()
            .approve(Some(pin_id), None, user)
            .unwrap_or_else(|e| panic!("approve PIN {pin_id} as {user}: {e}"));
    }

    /// Who the Auth App page approves as.
    pub fn set_next_user(&self, user: &str) {
        self.lock().next_user = Some(user.to_string());
    }

    /// Makes the PIN expire now (by the fake's clock).
    pub fn expire(&self, pin_id: i64) {
        let mut s = self.lock();
        let now = s.now();
        if let Some(p) = s.pins.get_mut(&pin_id) {
            p.expires_at = now;
        }
    }

    /// Moves the fake's clock (PIN expiry) forward.
    pub fn advance_clock(&self, seconds: i64) {
        self.lock().clock_offset += seconds;
    }

    /// The lifetime (`expiresIn`) of PINs created from now on.
    pub fn set_pin_lifetime(&self, seconds: i64) {
        self.lock().pin_lifetime = seconds;
    }

    /// plex.tv no longer accepts this token (`DELETE /api/v2/users/signout` does the same).
    pub fn revoke(&self, token: &str) {
        for a in self.lock().accounts.iter_mut() {
            if a.token == token {
                a.revoked = true;
            }
        }
    }

    /// Changes an account at plex.tv (its username, email, ...).
    pub fn update(&self, name: &str, change: impl FnOnce(&mut Account)) {
        let mut s = self.lock();
        let a = s
            .accounts
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no account {name} at the fake"));
        change(a);
    }

    /// Shares SRV1 with `user`, or stops sharing it.
    pub fn share(&self, user: &str, on: bool) {
        for a in self.lock().accounts.iter_mut() {
            if a.name == user {
                a.shared = on;
            }
        }
    }

    /// The next `times` requests whose path starts with `path_prefix` answer `status` (with
    /// `Retry-After` when given). Later faults for the same prefix queue behind earlier ones.
    pub fn fault(&self, path_prefix: &str, status: u16, times: u32, retry_after: Option<u64>) {
        self.fault_delayed(path_prefix, status, times, retry_after, 0);
    }

    /// Like `fault`, and each faulty answer comes `delay_ms` late (a slow plex.tv).
    pub fn fault_delayed(
        &self,
        path_prefix: &str,
        status: u16,
        times: u32,
        retry_after: Option<u64>,
        delay_ms: u64,
    ) {
        self.lock().faults.push(Fault {
            path_prefix: path_prefix.to_string(),
            status,
            times,
            retry_after,
            delay_ms,
        });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every request so far (the control route excluded), oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().requests.clone()
    }

    pub fn pins(&self) -> Vec<FakePin> {
        let mut pins: Vec<FakePin> = self.lock().pins.values().cloned().collect();
        pins.sort_by_key(|p| p.id);
        pins
    }

    pub fn pin_by_code(&self, code: &str) -> FakePin {
        self.pins()
            .into_iter()
            .find(|p| p.code == code)
            .unwrap_or_else(|| panic!("the fake made no PIN with code {code}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP side

fn errors(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "status": status.as_u16()}]});
    (status, axum::Json(body)).into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An `X-Plex-*` value from the header, else from the query (plex.tv accepts both).
fn plex_param(headers: &HeaderMap, q: &HashMap<String, String>, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get(name).cloned())
        .filter(|v| !v.is_empty())
}

fn iso(ts: i64) -> String {
    // Days-from-civil in reverse (Howard Hinnant's algorithm), enough for ISO-8601 UTC.
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn pin_json(p: &FakePin, product: &str) -> Value {
    json!({
        "id": p.id,
        "code": p.code,
        "product": product,
        "trusted": false,
        "qr": format!("https://plex.tv/api/v2/pins/qr/{}", p.code),
        "clientIdentifier": p.client_id,
        "location": {"code": "XX", "country": "Nowhere", "city": "Localhost", "time_zone": "UTC"},
        "expiresIn": (p.expires_at - p.created_at).max(0),
        "createdAt": iso(p.created_at),
        "expiresAt": iso(p.expires_at),
        "authToken": p.auth_token,
        "newRegistration": null,
    })
}

fn user_json(a: &Account) -> Value {
    json!({
        "id": a.id,
        "uuid": a.uuid,
        "username": a.username,
        "title": a.title,
        "friendlyName": a.friendly_name,
        "email": a.email,
        "thumb": a.thumb(),
        "authToken": a.token,
        "confirmed": a.confirmed,
        "restricted": a.restricted,
        "home": a.home,
        "homeAdmin": a.owner,
        "homeSize": if a.home { 2 } else { 1 },
        "maxHomeSize": 15,
        "guest": false,
        "protected": false,
        "anonymous": null,
        "twoFactorEnabled": false,
        "hasPassword": !a.restricted,
        "emailOnlyAuth": false,
        "joinedAt": 1_500_000_000 + a.id,
        "locale": null,
        "country": "XX",
        "subscription": {"active": false, "status": "Inactive"},
        "roles": [],
        "entitlements": [],
    })
}

fn connection(address: &str) -> Value {
    json!({
        "protocol": "https",
        "address": address,
        "port": 32400,
        "uri": format!("https://{}.plex.direct:32400", address.replace('.', "-")),
        "local": true,
        "relay": false,
        "IPv6": false,
    })
}

fn server_entry(a: &Account) -> Value {
    json!({
        "name": "Home Server",
        "product": "Plex Media Server",
        "productVersion": "1.41.0.8992",
        "platform": "Linux",
        "platformVersion": "6.1",
        "device": "PC",
        "clientIdentifier": SRV1,
        "createdAt": "2020-01-01T00:00:00Z",
        "lastSeenAt": "2026-01-01T00:00:00Z",
        "provides": "server",
        "ownerId": if a.owner { Value::Null } else { json!(1001) },
        "sourceTitle": if a.owner { Value::Null } else { json!("owner") },
        "publicAddress": "203.0.113.7",
        "accessToken": server_token(&a.name),
        "owned": a.owner,
        "home": a.owner,
        "synced": false,
        "relay": true,
        "presence": true,
        "httpsRequired": true,
        "publicAddressMatches": a.owner,
        "dnsRebindingProtection": false,
        "natLoopbackSupported": true,
        "connections": [connection("192.168.1.10")],
    })
}

fn player_entry(a: &Account, minimal: bool) -> Value {
    if minimal {
        // Optional fields left out, accessToken null (real captures have such entries).
        return json!({
            "name": format!("{}'s TV", a.name),
            "clientIdentifier": format!("player-{}", a.id),
            "provides": "client,player,pubsub-player",
            "owned": true,
            "accessToken": null,
        });
    }
    json!({
        "name": format!("{}'s phone", a.name),
        "product": "Plex for Android (Mobile)",
        "productVersion": "10.0",
        "platform": "Android",
        "platformVersion": "14",
        "device": "Pixel",
        "clientIdentifier": format!("player-{}", a.id),
        "createdAt": "2021-01-01T00:00:00Z",
        "lastSeenAt": "2026-01-01T00:00:00Z",
        "provides": "client,player,pubsub-player",
        "ownerId": null,
        "sourceTitle": null,
        "publicAddress": "198.51.100.4",
        "accessToken": format!("player-{}-token", a.name),
        "owned": true,
        "home": false,
        "synced": false,
        "relay": false,
        "presence": false,
        "httpsRequired": false,
        "publicAddressMatches": false,
        "connections": [],
    })
}

fn resources_json(a: &Account) -> Value {
    let mut list = Vec::new();
    if a.owner || a.shared {
        list.push(server_entry(a));
    }
    match a.name.as_str() {
        P_ALICE | EVE => list.push(player_entry(a, false)),
        P_BOB => list.push(player_entry(a, true)),
        _ => {}
    }
    Value::Array(list)
}

fn friend_json(a: &Account) -> Value {
    json!({
        "id": a.id,
        "uuid": a.uuid,
        "title": a.title,
        "username": a.username,
        "email": a.email,
        "friendlyName": a.friendly_name,
        "thumb": a.thumb(),
        "home": a.home,
        "restricted": a.restricted,
        "status": "accepted",
        "sharedServers": if a.shared { json!([{"machineIdentifier": SRV1}]) } else { json!([]) },
        "sharedSources": [],
    })
}

fn random_code(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

const AUTH_HTML: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Plex (fake Auth App)</title></head>
<body>
<h1>Plex</h1>
<p>Linking code: <strong id="code">…</strong></p>
<p id="status">Signing in…</p>
<script src="/auth.js"></script>
</body>
</html>
"#;

/// The Auth App's script: reads `clientID`/`code`/`forwardUrl` from the `#?` fragment,
/// approves the PIN as the fake's "next user", then goes to `forwardUrl` (if any).
const AUTH_JS: &str = r#"(function () {
  'use strict';
  var hash = window.location.hash || '';
  var params = new URLSearchParams(hash.indexOf('#?') === 0 ? hash.slice(2) : '');
  var code = params.get('code');
  var clientID = params.get('clientID');
  var forwardUrl = params.get('forwardUrl');
  var status = document.getElementById('status');
  document.getElementById('code').textContent = code || '(none)';
  if (!code || !clientID) { status.textContent = 'Missing clientID or code in the URL fragment.'; return; }
  fetch('/__fake/approve', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: code }) })
    .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
    .then(function (res) {
      if (!res.ok) { status.textContent = 'Approval failed: ' + (res.body.error || 'unknown'); return; }
      status.textContent = 'Approved as ' + res.body.user + '.';
      if (forwardUrl) { setTimeout(function () { window.location.href = forwardUrl; }, 300); }
    }, function (e) { status.textContent = 'Approval failed: ' + e; });
})();
"#;

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let q: HashMap<String, String> = raw_query
        .as_deref()
        .map(|s| {
            url::form_urlencoded::parse(s.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers = parts.headers;

    // The test's control route (the Auth App page calls it); not logged.
    if path == "/__fake/approve" && method == Method::POST {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut s = inner.lock().unwrap();
        let user = v["user"]
            .as_str()
            .map(str::to_string)
            .or_else(|| s.next_user.clone());
        let Some(user) = user else {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "no user given and no next user set"}),
            );
        };
        return match s.approve(v["pin_id"].as_i64(), v["code"].as_str(), &user) {
            Ok(id) => json_response(StatusCode::OK, json!({"pin_id": id, "user": user})),
            Err(e) => json_response(StatusCode::NOT_FOUND, json!({"error": e})),
        };
    }

    let resp = route(&inner, &method, &path, &q, &headers, &body);
    let mut logged_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k == "accept" || k.starts_with("x-plex-")
        })
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    logged_headers.sort();
    inner.lock().unwrap().requests.push(Logged {
        method: method.to_string(),
        path,
        query: raw_query,
        headers: logged_headers,
        status: resp.status().as_u16(),
        at: Instant::now(),
    });
    // A slow answer: logged when it arrived, sent late.
    if let Some(FaultDelay(ms)) = resp.extensions().get::<FaultDelay>().copied() {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    resp
}

fn route(
    inner: &Arc<Mutex<Inner>>,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // The Auth App stand-in (a browser page: no JSON rules).
    if method == Method::GET && (path == "/auth" || path == "/auth/") {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            AUTH_HTML,
        )
            .into_response();
    }
    if method == Method::GET && path == "/auth.js" {
        return (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            AUTH_JS,
        )
            .into_response();
    }

    let mut s = inner.lock().unwrap();
    // Injected failures first (plex.tv down, rate limited).
    if let Some(f) = s
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && path.starts_with(&f.path_prefix))
    {
        f.times -= 1;
        let status = StatusCode::from_u16(f.status).unwrap();
        let mut resp = if status == StatusCode::TOO_MANY_REQUESTS {
            errors(status, 1003, "API rate limit exceeded")
        } else {
            (status, "<html><body>Service Unavailable</body></html>").into_response()
        };
        if let Some(after) = f.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        resp.extensions_mut().insert(FaultDelay(f.delay_ms));
        return resp;
    }
    if !path.starts_with("/api/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    // plex.tv answers XML unless asked for JSON; the fake refuses instead.
    if !accepts_json(headers) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "the fake plex.tv speaks JSON only: send Accept: application/json",
        )
            .into_response();
    }
    let client_id = plex_param(headers, q, "X-Plex-Client-Identifier");
    let token = plex_param(headers, q, "X-Plex-Token");
    let product = plex_param(headers, q, "X-Plex-Product").unwrap_or_default();

    if path == "/api/v2/pins" || path == "/api/v2/pins.json" {
        if method != Method::POST {
            return errors(StatusCode::METHOD_NOT_ALLOWED, 1000, "method not allowed");
        }
        let Some(client_id) = client_id else {
            return errors(
                StatusCode::BAD_REQUEST,
                1000,
                "X-Plex-Client-Identifier is missing",
            );
        };
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let strong = q
            .get("strong")
            .or_else(|| form.get("strong"))
            .is_some_and(|v| v == "true" || v == "1");
        let now = s.now();
        let id = s.next_pin_id;
        s.next_pin_id += 1 + rand::random_range(0..1000);
        let (code, lifetime) = if strong {
            (
                random_code(25, b"abcdefghijklmnopqrstuvwxyz0123456789"),
                s.pin_lifetime,
            )
        } else {
            (
                random_code(4, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
                s.pin_lifetime / 2,
            )
        };
        let pin = FakePin {
            id,
            code,
            client_id,
            strong,
            created_at: now,
            expires_at: now + lifetime,
            auth_token: None,
            approved_by: None,
        };
        let body = pin_json(&pin, &product);
        s.pins.insert(id, pin);
        return json_response(StatusCode::CREATED, body);
    }
    if let Some(id) = path.strip_prefix("/api/v2/pins/") {
        if method != Method::GET {
            return errors(StatusCode::METHOD_NOT_ALLOWED, 1000, "method not allowed");
        }
        let now = s.now();
        let pin = id
            .trim_end_matches(".json")
            .parse::<i64>()
            .ok()
            .and_then(|id| s.pins.get(&id))
            .filter(|p| now < p.expires_at && Some(&p.client_id) == client_id.as_ref());
        return match pin {
            Some(p) => json_response(StatusCode::OK, pin_json(p, &product)),
            None => errors(StatusCode::NOT_FOUND, 1020, "Code not found or expired"),
        };
    }
    let unauthorized = || {
        errors(
            StatusCode::UNAUTHORIZED,
            1001,
            "User could not be authenticated",
        )
    };
    let Some(account) = token
        .as_deref()
        .and_then(|t| s.account_by_token(t))
        .cloned()
    else {
        return unauthorized();
    };
    match (method.as_str(), path) {
        ("GET", "/api/v2/user") => json_response(StatusCode::OK, user_json(&account)),
        ("GET", "/api/v2/resources") => json_response(StatusCode::OK, resources_json(&account)),
        ("GET", "/api/v2/friends") => {
            let friends: Vec<Value> = if account.owner {
                s.accounts
                    .iter()
                    .filter(|a| a.friend)
                    .map(friend_json)
                    .collect()
            } else {
                Vec::new()
            };
            json_response(StatusCode::OK, Value::Array(friends))
        }
        ("DELETE", "/api/v2/users/signout") => {
            for a in s.accounts.iter_mut() {
                if a.token == account.token {
                    a.revoked = true;
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => errors(StatusCode::NOT_FOUND, 1000, "not found"),
    }
}

// ---------------------------------------------------------------------------------------------
// doorman with Plex, driven like the landing page's script

/// A doorman whose `[plex]` points at `fake`, with `plex_keys` added to `[plex]`, `top` before
/// it (top-level keys) and `tables` after it (e.g. `[login]`, `[[clients]]`). The harness's
/// default local users (alice, bob) are removed, so Plex accounts get their own usernames.
pub async fn start_doorman(
    fake: &FakePlex,
    top: &str,
    plex_keys: &str,
    tables: &str,
) -> TestServer {
    let extra = format!(
        "secret_key = \"{SECRET_KEY}\"\n{top}\n[plex]\n{}{plex_keys}\n{tables}\n",
        fake.plex_toml()
    );
    let server = TestServer::start(&extra).await;
    for name in [super::ALICE, super::BOB] {
        if let Some(u) = server
            .state
            .store
            .find_user_by_username(name)
            .await
            .unwrap()
        {
            server.state.store.delete_user(&u.id).await.unwrap();
        }
    }
    server
}

/// A relying party registered at the test server.
#[derive(Debug, Clone, Copy)]
pub struct Rp {
    pub id: &'static str,
    pub secret: &'static str,
    pub redirect: &'static str,
}

pub const RP_CLIENT: Rp = Rp {
    id: super::RP,
    secret: super::RP_SECRET,
    redirect: super::RP_REDIRECT,
};

/// The whole config text the test server was started with (for the binary's `--config`).
pub fn server_config_text(server: &TestServer) -> &str {
    &server.config_text
}

/// An authorization request's landing page, read like plex.js reads it.
#[derive(Debug, Clone)]
pub struct PlexLanding {
    pub rp: Rp,
    pub state: String,
    pub verifier: String,
    pub flow: String,
    pub csrf: String,
}

impl PlexLanding {
    /// GET /authorize for `rp` in `browser`: the request (with `flow`/`csrf` when the answer is
    /// the landing page) and the answer.
    pub async fn authorize(
        server: &TestServer,
        browser: &Browser,
        rp: Rp,
        scope: &str,
    ) -> (PlexLanding, Page) {
        let (verifier, challenge) = super::pkce_pair();
        let state = super::random_string();
        let url = server.authorize_url(
            rp.id,
            rp.redirect,
            scope,
            &state,
            Some("n-0S6"),
            Some(&challenge),
            &[],
        );
        let page = browser.get(&url).await;
        let (flow, csrf) = if page.status == 200 && page.text.contains("id=\"plex-button\"") {
            landing_fields(&page)
        } else {
            (String::new(), String::new())
        };
        let landing = PlexLanding {
            rp,
            state,
            verifier,
            flow,
            csrf,
        };
        (landing, page)
    }

    /// GET /authorize for `rp` in `browser`; expects the landing page with the Plex button.
    pub async fn open(server: &TestServer, browser: &Browser, rp: Rp, scope: &str) -> PlexLanding {
        let (landing, page) = PlexLanding::authorize(server, browser, rp, scope).await;
        assert_eq!(page.status, 200, "authorize: {}", page.text);
        landing_fields(&page);
        landing
    }

    fn form(&self) -> [(&'static str, String); 2] {
        [("flow", self.flow.clone()), ("csrf", self.csrf.clone())]
    }

    pub async fn post(&self, server: &TestServer, browser: &Browser, path: &str) -> Page {
        let f = self.form();
        browser
            .post_form(&server.url(path), &[("flow", &f[0].1), ("csrf", &f[1].1)])
            .await
    }

    /// POST /login/plex/start; expects `started` and returns the Auth App URL and its code.
    pub async fn start(&self, server: &TestServer, browser: &Browser) -> AuthApp {
        let page = self.post(server, browser, "/login/plex/start").await;
        assert_eq!(page.status, 200, "start: {}", page.text);
        let j = page.json();
        assert_eq!(j["status"], "started", "{j}");
        AuthApp::parse(j["auth_url"].as_str().expect("auth_url"))
    }

    pub async fn poll(&self, server: &TestServer, browser: &Browser) -> Page {
        self.post(server, browser, "/login/plex/poll").await
    }

    /// Polls like the page (about once a second; the test moves doorman's clock instead of
    /// waiting) until the answer is no longer `pending`; returns the last page.
    pub async fn poll_until_settled(&self, server: &TestServer, browser: &Browser) -> Page {
        for _ in 0..12 {
            let page = self.poll(server, browser).await;
            if page.status != 200 || page.json()["status"] != "pending" {
                return page;
            }
            server.clock.advance(1);
        }
        panic!("the Plex sign-in stayed pending");
    }

    /// Polls until `done`; returns the redirect (to the RP, with the code).
    pub async fn poll_until_done(&self, server: &TestServer, browser: &Browser) -> url::Url {
        let page = self.poll_until_settled(server, browser).await;
        assert_eq!(page.status, 200, "poll: {}", page.text);
        let j = page.json();
        assert_eq!(j["status"], "done", "{j}");
        assert!(page.sets_cookie("doorman_session"), "a session cookie");
        url::Url::parse(j["redirect"].as_str().unwrap()).unwrap()
    }

    /// The code in the RP redirect (state and iss checked).
    pub fn code_from(&self, server: &TestServer, back: &url::Url) -> String {
        assert!(
            back.as_str().starts_with(self.rp.redirect),
            "sent to {back} instead of {}",
            self.rp.redirect
        );
        let q = query(back);
        assert_eq!(q.get("state"), Some(&self.state), "{back}");
        assert_eq!(q.get("iss"), Some(&server.base), "{back}");
        q.get("code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .clone()
    }

    /// Redeems the code; returns the token response JSON.
    pub async fn redeem(&self, server: &TestServer, code: &str) -> Value {
        let page = server
            .token_basic(
                self.rp.id,
                self.rp.secret,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", self.rp.redirect),
                    ("code_verifier", &self.verifier),
                ],
            )
            .await;
        page.assert_status(200);
        page.json()
    }

    /// Start, approve as `user`, poll to `done`, redeem: the token response.
    pub async fn sign_in(
        &self,
        server: &TestServer,
        fake: &FakePlex,
        browser: &Browser,
        user: &str,
    ) -> Value {
        let app = self.start(server, browser).await;
        fake.approve(&app.code, user);
        let back = self.poll_until_done(server, browser).await;
        let code = self.code_from(server, &back);
        self.redeem(server, &code).await
    }
}

/// The `flow` and `csrf` the landing page gives its Plex button (and the same-tab form).
pub fn landing_fields(page: &Page) -> (String, String) {
    assert!(page.is_html(), "a page: {:?}", page.headers);
    assert!(
        page.text.contains("id=\"plex-button\""),
        "the landing page offers Plex: {}",
        page.text
    );
    let flow = input_value(&page.text, "flow").expect("a flow field");
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    (flow, csrf)
}

/// An Auth App URL as doorman makes it: `{auth_app}#?clientID=..&code=..&...`.
#[derive(Debug, Clone)]
pub struct AuthApp {
    pub url: String,
    /// The URL before the fragment.
    pub base: String,
    pub params: HashMap<String, String>,
    pub code: String,
}

impl AuthApp {
    pub fn parse(url: &str) -> AuthApp {
        let (base, fragment) = url
            .split_once("#?")
            .unwrap_or_else(|| panic!("no #? fragment in {url}"));
        let params: HashMap<String, String> = url::form_urlencoded::parse(fragment.as_bytes())
            .into_owned()
            .collect();
        let code = params.get("code").cloned().expect("a code");
        AuthApp {
            url: url.to_string(),
            base: base.to_string(),
            params,
            code,
        }
    }

    pub fn forward_url(&self) -> String {
        self.params
            .get("forwardUrl")
            .cloned()
            .expect("a forwardUrl")
    }
}

/// The PIN polls the fake saw for `pin_id`.
pub fn pin_polls(fake: &FakePlex, pin_id: i64) -> Vec<Logged> {
    let path = format!("/api/v2/pins/{pin_id}");
    fake.requests()
        .into_iter()
        .filter(|r| r.is_pin_poll() && r.path == path)
        .collect()
}
