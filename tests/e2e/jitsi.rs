//! The Jitsi Meet bridge over HTTP: `/jitsi/{room}` (Jitsi's TOKEN_AUTH_URL) signs the user in
//! or reuses the SSO session, and sends the browser to the meeting with a token that the
//! Prosody-rule verifier (common/prosody.rs, jitsi.md §3) accepts, configured like
//! docker-jitsi-meet. Also: hostile room names, the `state` parameter, the options that shape
//! the redirect, and guest links.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::common::prosody::{self, Key, ProsodyConfig};
use crate::common::*;

/// 40 characters, with `+` and `/`: it looks like base64 but is used as a string.
pub const SECRET: &str = "7Qm+2vX/9kLp0RzT4wYb8NcJd3sHfA6eUoBi5yGh";
pub const MEET: &str = "https://meet.example.com";
/// docker-jitsi-meet's MUC domain (prefix "muc", XMPP domain "meet.jitsi").
pub const MUC: &str = "muc.meet.jitsi";
const LIFETIME: i64 = 3 * 3600;
const SKEW: i64 = 60;

/// `[jitsi]` as the tests use it, plus `extra` keys of the same table.
pub fn jitsi_toml(extra: &str) -> String {
    assert_eq!(SECRET.len(), 40);
    format!(
        "[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\napp_secret = \"{SECRET}\"\nmoderator_groups = [\"admins\"]\n{extra}\n"
    )
}

pub async fn start(extra: &str) -> TestServer {
    TestServer::start(&jitsi_toml(extra)).await
}

/// Prosody as docker-jitsi-meet sets it up: app_id jitsi, the same secret, domain verification off.
pub fn docker() -> ProsodyConfig {
    ProsodyConfig::docker("jitsi", SECRET)
}

/// The same with domain verification on (the MUC domain `muc.meet.jitsi`).
pub fn docker_verifying_domains() -> ProsodyConfig {
    ProsodyConfig {
        enable_domain_verification: true,
        ..docker()
    }
}

/// The raw Location header (not resolved: `Url` would re-encode the fragment).
#[track_caller]
pub fn raw_location(page: &Page) -> String {
    page.header("location")
        .unwrap_or_else(|| {
            panic!(
                "expected a redirect, got {} with body:\n{}",
                page.status, page.text
            )
        })
        .to_string()
}

/// The token a meeting URL carries: `?jwt=<token>` or `#jwt="<token>"`.
#[track_caller]
pub fn token_in(location: &str) -> String {
    let url = Url::parse(location).unwrap();
    if let Some(t) = query(&url).get("jwt") {
        return t.clone();
    }
    let fragment = location.split_once('#').map(|(_, f)| f).unwrap_or("");
    fragment
        .split('&')
        .find_map(|p| p.strip_prefix("jwt=\"").and_then(|t| t.strip_suffix('"')))
        .unwrap_or_else(|| panic!("no token in {location}"))
        .to_string()
}

/// The `&`-separated parts of the fragment.
pub fn hash_params(location: &str) -> Vec<String> {
    match location.split_once('#') {
        Some((_, f)) => f.split('&').map(str::to_string).collect(),
        None => Vec::new(),
    }
}

/// Checks a bridge token the way Prosody (domain verification off and on) and doorman's own
/// rules would, for MUC node `node`, minted between `before` and `after`; returns its claims.
#[track_caller]
pub fn check_token(token: &str, node: &str, before: i64, after: i64) -> Value {
    let now = after;
    let claims = prosody::verify(token, &docker(), now, node, MUC)
        .unwrap_or_else(|e| panic!("Prosody would refuse the token for {node}: {e}"));
    prosody::verify(token, &docker_verifying_domains(), now, node, MUC).unwrap_or_else(|e| {
        panic!("Prosody with domain verification would refuse the token for {node}: {e}")
    });
    let claims = Value::Object(claims);
    assert_eq!(
        token.split('.').next().unwrap(),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        "the header is exactly {{\"alg\":\"HS256\",\"typ\":\"JWT\"}}"
    );
    assert!(!prosody::has_null(&claims), "no JSON nulls: {claims}");
    assert!(
        !prosody::has_key(&claims, "features"),
        "no features (they strip moderators' rights): {claims}"
    );
    for k in ["iat", "nbf", "exp"] {
        assert!(claims[k].is_i64(), "{k} is an integer: {claims}");
    }
    let iat = claims["iat"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} not in [{before}, {after}]"
    );
    assert_eq!(claims["nbf"], iat - SKEW);
    assert!(claims["exp"].as_i64().unwrap() <= iat + 24 * 3600);
    assert_eq!(claims["iss"], "jitsi");
    assert_eq!(claims["aud"], "jitsi");
    assert_eq!(claims["sub"], "*");
    let name = claims["context"]["user"]["name"].as_str().unwrap_or("");
    assert!(!name.trim().is_empty(), "a name: {claims}");
    claims
}

/// Opens `/jitsi/<path>` in a browser without a session, gets the landing page, signs in and
/// returns the answer to the login POST.
pub async fn sign_in_via(
    server: &TestServer,
    browser: &Browser,
    path: &str,
    user: &str,
    pass: &str,
) -> Page {
    let landing = browser.get(&server.url(&format!("/jitsi/{path}"))).await;
    landing.assert_status(200);
    assert!(landing.is_html());
    assert!(landing.location().is_none());
    assert!(
        landing.login_form().is_some(),
        "the landing page has the password form:\n{}",
        landing.text
    );
    browser.submit_login(&landing, user, pass).await
}

/// A browser signed in as `user` through `/jitsi/MyRoom` (the token is checked elsewhere).
pub async fn signed_in(server: &TestServer, user: &str, pass: &str) -> Browser {
    let browser = Browser::new();
    let done = sign_in_via(server, &browser, "MyRoom", user, pass).await;
    assert!(done.status == 303, "{}: {}", done.status, done.text);
    browser
}

/// A GET written by hand, for request targets a URL library would normalise (`/jitsi/..`) or
/// headers reqwest sets itself (Host). Returns the status and the header block.
pub async fn raw_get(port: u16, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head)
}

fn head_has_location(head: &str) -> bool {
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with("location:"))
}

fn head_location(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .starts_with("location:")
            .then(|| l["location:".len()..].trim().to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-in, SSO, moderators

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_login_then_meeting_with_a_token_prosody_accepts() {
    let server = start("").await;
    let browser = Browser::new();
    let before = server.now();
    let done = sign_in_via(&server, &browser, "MyRoom", ALICE, ALICE_PASSWORD).await;
    let after = server.now();
    assert_eq!(done.status, 303, "after a form POST: {}", done.text);
    let location = raw_location(&done);
    assert!(
        location.starts_with(&format!("{MEET}/MyRoom?jwt=")),
        "{location}"
    );
    assert_eq!(
        Url::parse(&location).unwrap().host_str(),
        Some("meet.example.com")
    );
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(browser.cookie(&server.base, "doorman_session").is_some());

    let claims = check_token(&token_in(&location), "myroom", before, after);
    assert_eq!(claims["room"], "myroom", "jitsi-meet's roomSafe of MyRoom");
    let user = &claims["context"]["user"];
    assert_eq!(user["affiliation"], "owner");
    assert_eq!(user["moderator"], true);
    assert_eq!(user["name"], "Alice Liddell");
    assert_eq!(user["email"], ALICE_EMAIL);
    assert!(user["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(user.get("lobby_bypass").is_none(), "only when configured");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"], iat + LIFETIME, "3h by default");
    // The token is for MyRoom only.
    assert!(prosody::verify(&token_in(&location), &docker(), after, "otherroom", MUC).is_err());
    // Expiry: Prosody accepts it until exp, not at exp.
    let token = token_in(&location);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(prosody::verify(&token, &docker(), exp - 1, "myroom", MUC).is_ok());
    assert!(prosody::verify(&token, &docker(), exp, "myroom", MUC).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_member_token_for_a_user_outside_moderator_groups() {
    let server = start("").await;
    let browser = Browser::new();
    let before = server.now();
    let done = sign_in_via(&server, &browser, "MyRoom", BOB, BOB_PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let claims = check_token(
        &token_in(&raw_location(&done)),
        "myroom",
        before,
        server.now(),
    );
    let user = &claims["context"]["user"];
    assert_eq!(user["affiliation"], "member");
    assert_eq!(user["moderator"], false);
    assert_eq!(user["name"], BOB, "no display name: the username");
    assert!(user.get("email").is_none(), "absent, not null: {user}");
    assert!(user.get("avatar").is_none(), "absent, not null: {user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_session_answers_at_once_with_a_302_and_no_page() {
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let before = server.now();
    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(302);
    assert!(page.text.is_empty(), "no body: {}", page.text);
    assert!(!page.is_html());
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let location = raw_location(&page);
    assert_eq!(
        Url::parse(&location).unwrap().host_str(),
        Some("meet.example.com")
    );
    assert!(
        location.starts_with(&format!("{MEET}/MyRoom?jwt=")),
        "{location}"
    );
    let claims = check_token(&token_in(&location), "myroom", before, server.now());
    assert_eq!(claims["context"]["user"]["affiliation"], "owner");

    // Another room from the same session: its own token.
    let page = browser.get(&server.url("/jitsi/Standup")).await;
    page.assert_status(302);
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "standup",
        before,
        server.now(),
    );
    assert_eq!(claims["room"], "standup");

    // Groups are read at every token: alice out of admins is a member from now on.
    doorman::accounts::users::update_profile(
        &*server.state.store,
        ALICE,
        doorman::accounts::ProfileUpdate {
            groups: Some(vec![]),
            ..Default::default()
        },
        server.now(),
    )
    .await
    .unwrap();
    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(302);
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "myroom",
        before,
        server.now(),
    );
    assert_eq!(claims["context"]["user"]["affiliation"], "member");
    assert_eq!(claims["context"]["user"]["moderator"], false);

    // A disabled account's session is over: the landing page again, no token.
    doorman::accounts::users::set_disabled(&*server.state.store, ALICE, true, server.now())
        .await
        .unwrap();
    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(200);
    assert!(page.location().is_none());
    assert!(page.login_form().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_denied_group_gets_403_and_never_a_redirect() {
    let server = start("allowed_groups = [\"admins\"]").await;

    // Bob signs in for a meeting he may not join: the login POST must not send him to the
    // meeting (with AutoRedirect, Jitsi would send him straight back: a loop).
    let browser = Browser::new();
    let done = sign_in_via(&server, &browser, "MyRoom", BOB, BOB_PASSWORD).await;
    if let Some(l) = done.header("location") {
        assert!(
            !l.contains("meet.example.com") && !l.contains("jwt="),
            "{l}"
        );
        let next = browser.get(done.location().unwrap().as_str()).await;
        next.assert_status(403);
        assert!(next.location().is_none());
    } else {
        done.assert_status(403);
    }
    // And with his session: a 403 page, no Location, no token anywhere.
    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(403);
    assert!(page.location().is_none(), "{:?}", page.headers);
    assert!(page.is_html());
    assert!(!page.text.contains("jwt"), "{}", page.text);

    // Alice is in the group.
    let alice = Browser::new();
    let done = sign_in_via(&server, &alice, "MyRoom", ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    assert!(raw_location(&done).starts_with(&format!("{MEET}/MyRoom?jwt=")));
}

// ---------------------------------------------------------------------------------------------
// Room names and redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_hostile_room_names_get_400_and_no_location() {
    let server = start("").await;
    // Signed in, so every acceptable name would be a 302: a 400 is the name's doing.
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let long = "a".repeat(201);
    let long_multibyte = "%D0%A2".repeat(101); // 202 bytes once decoded
    let bad: Vec<&str> = vec![
        "%20",
        "%09",
        "%0A",
        "a%20b",
        "%07",
        "%00",
        "a%7Fb",
        "%C2%85",    // NEL, a control character
        "%C2%A0",    // no-break space
        "%E2%80%A8", // line separator
        "%E3%80%80", // ideographic space
        "%22",
        "a%22b",
        "a%2Fb",
        "%2F",
        "%2F%2Fevil.example",
        "a%3Fb",
        "%3F",
        "a%23b",
        "%40",
        "a%40b",
        "%5C",
        "a%5Cb",
        "%25",
        "%252F", // decoded once: "%2F"
        "a%3Ab",
        "%5Bacme%5Dx", // tenant brackets
        "a%3Cb%3E",
        "a'b",
        "a!b",
        "a*b",
        "a+b",
        "a,b",
        "a;b",
        "a=b",
        "a$b",
        "a&b",
        "a(b)",
        "a..b",
        &long,
        &long_multibyte,
        "%FF",
        "a%C3%28b",  // invalid UTF-8
        "%ED%A0%80", // a UTF-16 surrogate
    ];
    for room in bad {
        let page = browser.get(&server.url(&format!("/jitsi/{room}"))).await;
        assert_eq!(page.status, 400, "/jitsi/{room}: {}", page.text);
        assert!(
            page.location().is_none(),
            "/jitsi/{room}: {:?}",
            page.headers
        );
        assert!(page.is_html(), "an error page");
    }
    // Targets a URL library would normalise away, sent as they are.
    let cookie = format!(
        "doorman_session={}",
        browser.cookie(&server.base, "doorman_session").unwrap()
    );
    for target in [
        "/jitsi/..",
        "/jitsi/.",
        "/jitsi/%2e%2e",
        "/jitsi/%2E",
        "/jitsi/.%2e",
        "/jitsi/%2e.",
    ] {
        let (status, head) = raw_get(server.port, target, &[("Cookie", &cookie)]).await;
        assert_eq!(status, 400, "{target}: {head}");
        assert!(!head_has_location(&head), "{target}: {head}");
    }
    // No room at all: not found, no redirect.
    for target in ["/jitsi/", "/jitsi"] {
        let (status, head) = raw_get(server.port, target, &[("Cookie", &cookie)]).await;
        assert!((400..500).contains(&status), "{target}: {head}");
        assert!(!head_has_location(&head), "{target}: {head}");
    }
    // The same hostile names on the invitation page.
    for room in ["a%2Fb", "a%3Fb", "%FF", "a%40b", "%20"] {
        let page = browser
            .get(&server.url(&format!("/jitsi/invite/{room}")))
            .await;
        assert_eq!(page.status, 400, "/jitsi/invite/{room}");
        assert!(page.location().is_none());
    }
    let (status, head) = raw_get(server.port, "/jitsi/invite/..", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 400, "{head}");
    assert!(!head_has_location(&head), "{head}");
    // And without a session: the name is refused before any landing page.
    let stranger = Browser::new();
    let page = stranger.get(&server.url("/jitsi/a%2Fb")).await;
    page.assert_status(400);
    assert!(page.login_form().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_room_names_at_the_limits_are_fine() {
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let before = server.now();
    let ok = [
        ("a".repeat(200), "a".repeat(200)),
        (
            "%D0%A2".repeat(100), // 200 bytes
            "%d1%82".repeat(100),
        ),
        ("a-b_c.d~e".to_string(), "a-b_c.d~e".to_string()),
        ("Room42".to_string(), "room42".to_string()),
        ("invite".to_string(), "invite".to_string()),
    ];
    for (path, node) in ok {
        let page = browser.get(&server.url(&format!("/jitsi/{path}"))).await;
        assert_eq!(page.status, 302, "/jitsi/{path}: {}", page.text);
        let location = raw_location(&page);
        assert!(
            location.starts_with(&format!("{MEET}/{path}?jwt=")),
            "the room keeps its case and encoding: {location}"
        );
        let claims = check_token(&token_in(&location), &node, before, server.now());
        assert_eq!(claims["room"], node.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_redirect_host_is_always_meet_url() {
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let before = server.now();

    let page = browser.get(&server.url("/jitsi/evil.example")).await;
    page.assert_status(302);
    let location = raw_location(&page);
    assert!(
        location.starts_with(&format!("{MEET}/evil.example?jwt=")),
        "{location}"
    );
    check_token(&token_in(&location), "evil.example", before, server.now());

    // The room, roomSafe and tenant inside jitsi-meet's state are not trusted.
    let state = json!({
        "room": "https://evil.example",
        "roomSafe": "otherroom",
        "tenant": "evil.example",
        "config.startWithAudioMuted": true,
    })
    .to_string();
    let mut url = Url::parse(&server.url("/jitsi/MyRoom")).unwrap();
    url.query_pairs_mut().append_pair("state", &state);
    let page = browser.get(url.as_str()).await;
    page.assert_status(302);
    let location = raw_location(&page);
    let parsed = Url::parse(&location).unwrap();
    assert_eq!(parsed.host_str(), Some("meet.example.com"));
    assert_eq!(parsed.path(), "/MyRoom");
    assert!(!location.contains("evil"), "{location}");
    let claims = check_token(&token_in(&location), "myroom", before, server.now());
    assert_eq!(claims["room"], "myroom");
    assert!(claims.get("context").unwrap().get("tenant").is_none());

    // Nor are the Host and forwarding headers.
    let cookie = format!(
        "doorman_session={}",
        browser.cookie(&server.base, "doorman_session").unwrap()
    );
    let (status, head) = raw_get(
        server.port,
        "/jitsi/MyRoom",
        &[
            ("Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "http"),
            ("Forwarded", "host=evil.example;proto=http"),
            ("Cookie", &cookie),
        ],
    )
    .await;
    assert_eq!(status, 302, "{head}");
    let location = head_location(&head).unwrap();
    assert!(
        location.starts_with(&format!("{MEET}/MyRoom?jwt=")),
        "{location}"
    );

    // A scheme-relative or absolute "room" is not a room.
    for room in ["%2F%2Fevil.example", "https%3A%2F%2Fevil.example"] {
        let page = browser.get(&server.url(&format!("/jitsi/{room}"))).await;
        page.assert_status(400);
        assert!(page.location().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_meet_url_with_a_trailing_slash_or_a_path() {
    for (meet, expected) in [
        (
            "https://meet.example.com/",
            "https://meet.example.com/MyRoom?jwt=",
        ),
        (
            "https://example.com/jitsi/",
            "https://example.com/jitsi/MyRoom?jwt=",
        ),
        (
            "https://example.com/jitsi",
            "https://example.com/jitsi/MyRoom?jwt=",
        ),
    ] {
        let server = TestServer::start(&format!(
            "[jitsi]\nmeet_url = \"{meet}\"\napp_id = \"jitsi\"\napp_secret = \"{SECRET}\"\n"
        ))
        .await;
        let browser = Browser::new();
        let done = sign_in_via(&server, &browser, "MyRoom", ALICE, ALICE_PASSWORD).await;
        assert_eq!(done.status, 303);
        let location = raw_location(&done);
        assert!(location.starts_with(expected), "{meet}: {location}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_non_ascii_room_gets_jitsi_meets_room_safe_name() {
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let before = server.now();
    let node = "%d1%82%d0%b5%d1%81%d1%82";
    // Тест, тест (percent-encoded as browsers send them), and a raw UTF-8 path.
    for path in [
        "%D0%A2%D0%B5%D1%81%D1%82",
        "%D1%82%D0%B5%D1%81%D1%82",
        "Тест",
    ] {
        let page = browser.get(&server.url(&format!("/jitsi/{path}"))).await;
        assert_eq!(page.status, 302, "/jitsi/{path}: {}", page.text);
        let location = raw_location(&page);
        let claims = check_token(&token_in(&location), node, before, server.now());
        assert_eq!(claims["room"], node);
        assert_eq!(
            Url::parse(&location).unwrap().host_str(),
            Some("meet.example.com")
        );
        // The meeting URL keeps the name the user typed (percent-encoded).
        assert!(
            location.starts_with(&format!("{MEET}/%D0%A2%D0%B5%D1%81%D1%82?jwt="))
                || location.starts_with(&format!("{MEET}/%D1%82%D0%B5%D1%81%D1%82?jwt=")),
            "{location}"
        );
        assert!(
            prosody::verify(&token_in(&location), &docker(), server.now(), "тест", MUC).is_err(),
            "the MUC node is the encoded name"
        );
    }
    // JavaScript's toLowerCase, which Rust's to_lowercase matches: a final capital sigma
    // becomes ς, so "ΟΔΟΣ" is the room "οδος" (…%cf%82).
    let page = browser.get(&server.url("/jitsi/ΟΔΟΣ")).await;
    page.assert_status(302);
    let node = "%ce%bf%ce%b4%ce%bf%cf%82";
    let claims = check_token(&token_in(&raw_location(&page)), node, before, server.now());
    assert_eq!(claims["room"], node);
    // NFKC, as jitsi-meet does it: the ligature ﬁ is "fi".
    let page = browser.get(&server.url("/jitsi/%EF%AC%81le")).await;
    page.assert_status(302);
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "file",
        before,
        server.now(),
    );
    assert_eq!(claims["room"], "file");
}

// ---------------------------------------------------------------------------------------------
// The state parameter and the redirect options

fn with_state(server: &TestServer, room: &str, state: &Value) -> String {
    let mut url = Url::parse(&server.url(&format!("/jitsi/{room}"))).unwrap();
    url.query_pairs_mut()
        .append_pair("state", &state.to_string());
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_state_passes_only_allow_listed_config_flags() {
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let state = json!({
        "room": "MyRoom",
        "config.startWithAudioMuted": true,
        "config.evil": "x",
        "interfaceConfig.APP_NAME": "x",
        "config.startWithVideoMuted": "true",
    });
    let page = browser.get(&with_state(&server, "MyRoom", &state)).await;
    page.assert_status(302);
    let location = raw_location(&page);
    assert_eq!(
        hash_params(&location),
        vec!["config.startWithAudioMuted=true"]
    );
    assert!(query(&Url::parse(&location).unwrap()).contains_key("jwt"));

    // Not JSON, or not an object: no hash, still a meeting.
    for bad in ["not json", "[1,2]", "\"config.startWithAudioMuted\""] {
        let mut url = Url::parse(&server.url("/jitsi/MyRoom")).unwrap();
        url.query_pairs_mut().append_pair("state", bad);
        let page = browser.get(url.as_str()).await;
        page.assert_status(302);
        assert!(hash_params(&raw_location(&page)).is_empty(), "{bad}");
    }

    // Through a sign-in, the flags survive the landing page.
    let fresh = Browser::new();
    let landing = fresh.get(&with_state(&server, "MyRoom", &state)).await;
    landing.assert_status(200);
    let done = fresh.submit_login(&landing, BOB, BOB_PASSWORD).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        hash_params(&raw_location(&done)),
        vec!["config.startWithAudioMuted=true"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_skip_prejoin_adds_the_hash_flag() {
    let server = start("skip_prejoin = true").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(302);
    let location = raw_location(&page);
    assert!(
        location.starts_with(&format!("{MEET}/MyRoom?jwt=")),
        "{location}"
    );
    assert_eq!(
        hash_params(&location),
        vec!["config.prejoinConfig.enabled=false"]
    );
    let state = json!({"config.startWithAudioMuted": true, "config.evil": "x"});
    let page = browser.get(&with_state(&server, "MyRoom", &state)).await;
    let params = hash_params(&raw_location(&page));
    assert!(params.contains(&"config.startWithAudioMuted=true".to_string()));
    assert!(params.contains(&"config.prejoinConfig.enabled=false".to_string()));
    assert_eq!(params.len(), 2, "{params:?}");
    // The flag once, even when the state carries it too.
    let state = json!({"config.prejoinConfig.enabled": false});
    let page = browser.get(&with_state(&server, "MyRoom", &state)).await;
    let params = hash_params(&raw_location(&page));
    assert_eq!(params, vec!["config.prejoinConfig.enabled=false"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_token_in_fragment() {
    let server = start("token_in_fragment = true\nskip_prejoin = true").await;
    let browser = Browser::new();
    let before = server.now();
    let done = sign_in_via(&server, &browser, "MyRoom", ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let location = raw_location(&done);
    assert!(
        location.starts_with(&format!("{MEET}/MyRoom#jwt=\"")),
        "{location}"
    );
    let parsed = Url::parse(&location).unwrap();
    assert!(parsed.query().is_none(), "no ?jwt=: {location}");
    let params = hash_params(&location);
    assert!(params[0].starts_with("jwt=\"") && params[0].ends_with('"'));
    assert_eq!(
        params[1..],
        ["config.prejoinConfig.enabled=false".to_string()]
    );
    check_token(&token_in(&location), "myroom", before, server.now());

    let page = browser.get(&server.url("/jitsi/MyRoom")).await;
    page.assert_status(302);
    let location = raw_location(&page);
    assert!(!location.contains("?jwt="), "{location}");
    check_token(&token_in(&location), "myroom", before, server.now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_verifier_with_the_wrong_settings_refuses_doormans_token() {
    let server = start("").await;
    let browser = Browser::new();
    let before = server.now();
    let done = sign_in_via(&server, &browser, "MyRoom", ALICE, ALICE_PASSWORD).await;
    let token = token_in(&raw_location(&done));
    let now = server.now();
    check_token(&token, "myroom", before, now);
    let refuses = |cfg: ProsodyConfig, node: &str, why: &str| {
        assert!(
            prosody::verify(&token, &cfg, now, node, MUC).is_err(),
            "accepted with {why}"
        );
    };
    refuses(
        ProsodyConfig {
            key: Key::Hs256(format!("{SECRET}x")),
            ..docker()
        },
        "myroom",
        "another secret",
    );
    refuses(
        ProsodyConfig {
            key: Key::Hs256(SECRET[..32].to_string()),
            ..docker()
        },
        "myroom",
        "a truncated secret",
    );
    refuses(docker(), "otherroom", "another room");
    refuses(
        docker_verifying_domains(),
        "otherroom",
        "another room, domains verified",
    );
    refuses(
        ProsodyConfig {
            accepted_audiences: vec!["other".into()],
            ..docker()
        },
        "myroom",
        "another audience",
    );
    refuses(
        ProsodyConfig::docker("other-app", SECRET),
        "myroom",
        "another app_id (issuer)",
    );
    // And the matching lists accept it.
    let listed = ProsodyConfig {
        accepted_audiences: vec!["jitsi".into()],
        accepted_issuers: vec!["jitsi".into()],
        ..docker()
    };
    assert!(prosody::verify(&token, &listed, now, "myroom", MUC).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_configured_claims_and_wildcard_room() {
    let server = start(
        "room_claim = \"wildcard\"\nissuer = \"doorman\"\naudience = \"meet\"\nsubject = \"meet.jitsi\"\ntoken_lifetime = \"1h\"\nclock_skew = \"30s\"\nlobby_bypass_groups = [\"admins\"]",
    )
    .await;
    let browser = Browser::new();
    let done = sign_in_via(&server, &browser, "MyRoom", ALICE, ALICE_PASSWORD).await;
    let token = token_in(&raw_location(&done));
    let now = server.now();
    let cfg = ProsodyConfig {
        accepted_issuers: vec!["doorman".into()],
        accepted_audiences: vec!["meet".into()],
        ..docker()
    };
    let claims = Value::Object(prosody::verify(&token, &cfg, now, "otherroom", MUC).unwrap());
    assert_eq!(claims["room"], "*");
    assert_eq!(claims["iss"], "doorman");
    assert_eq!(claims["aud"], "meet");
    assert_eq!(claims["sub"], "meet.jitsi");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"], iat - 30);
    assert_eq!(claims["exp"], iat + 3600);
    assert_eq!(claims["context"]["user"]["lobby_bypass"], true);
    // sub meet.jitsi with domain verification: muc.meet.jitsi.
    let verifying = ProsodyConfig {
        enable_domain_verification: true,
        ..cfg.clone()
    };
    assert!(prosody::verify(&token, &verifying, now, "anyroom", MUC).is_ok());
    // The default issuer (app_id) is not accepted any more.
    assert!(prosody::verify(&token, &docker(), now, "myroom", MUC).is_err());

    // Bob: no lobby bypass.
    let bob = Browser::new();
    let done = sign_in_via(&server, &bob, "MyRoom", BOB, BOB_PASSWORD).await;
    let claims = Value::Object(
        prosody::verify(&token_in(&raw_location(&done)), &cfg, now, "x", MUC).unwrap(),
    );
    assert!(claims["context"]["user"].get("lobby_bypass").is_none());
}

// ---------------------------------------------------------------------------------------------
// Guest links

/// The guest link on an invitation page.
fn guest_link(html: &str) -> Option<String> {
    let html = html_unescape(html);
    let at = html.find("?invite=")?;
    let start = html[..at].rfind('"')? + 1;
    let end = at + html[at..].find('"')?;
    Some(html[start..end].to_string())
}

/// A guest link for `room`, made by alice (signed in in `browser`), valid `valid_for` seconds.
async fn make_guest_link(
    server: &TestServer,
    browser: &Browser,
    room: &str,
    valid_for: &str,
) -> String {
    let page = browser
        .get(&server.url(&format!("/jitsi/invite/{room}")))
        .await;
    page.assert_status(200);
    assert!(page.is_html());
    let csrf = input_value(&page.text, "csrf").expect("a csrf field");
    let action = form_action(&page.text).expect("a form");
    assert_eq!(action, server.url(&format!("/jitsi/invite/{room}")));
    let made = browser
        .post_form(&action, &[("csrf", &csrf), ("valid_for", valid_for)])
        .await;
    made.assert_status(200);
    guest_link(&made.text).unwrap_or_else(|| panic!("no guest link in:\n{}", made.text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_guest_link_opens_one_room_until_it_expires() {
    let server = start("allowed_groups = [\"admins\"]").await;
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let link = make_guest_link(&server, &alice, "Standup", "3600").await;
    assert!(
        link.starts_with(&format!("{}/jitsi/Standup?invite=", server.base)),
        "{link}"
    );

    // A stranger (no session, in no group) opens it: straight to the meeting as a member.
    let guest = Browser::new();
    let before = server.now();
    let page = guest.get(&link).await;
    page.assert_status(302);
    assert!(page.text.is_empty());
    let location = raw_location(&page);
    assert!(
        location.starts_with(&format!("{MEET}/Standup?jwt=")),
        "{location}"
    );
    let claims = check_token(&token_in(&location), "standup", before, server.now());
    assert_eq!(claims["room"], "standup");
    let user = &claims["context"]["user"];
    assert_eq!(user["affiliation"], "member");
    assert_eq!(user["moderator"], false);
    assert!(user.get("email").is_none());
    assert!(
        guest.cookie(&server.base, "doorman_session").is_none(),
        "no session for a guest"
    );
    // The token opens Standup only.
    assert!(prosody::verify(&token_in(&location), &docker(), server.now(), "other", MUC).is_err());

    // The link lets one person in: a second use is refused, with no redirect.
    let again = Browser::new().get(&link).await;
    again.assert_status(403);
    assert!(again.location().is_none());

    // The same invitation for another room.
    let token = link.split("?invite=").nth(1).unwrap();
    let other = guest
        .get(&server.url(&format!("/jitsi/Other?invite={token}")))
        .await;
    other.assert_status(403);
    assert!(other.location().is_none());
    // A forged or truncated one.
    for bad in [
        format!("{token}x"),
        token[..token.len() - 2].to_string(),
        token.replacen('.', "", 1),
        "x.y".to_string(),
        String::new(),
    ] {
        let page = guest
            .get(&server.url(&format!("/jitsi/Standup?invite={bad}")))
            .await;
        page.assert_status(403);
        assert!(page.location().is_none(), "invite={bad}");
    }

    // An hour and a second later, any link of it is over.
    let unused = make_guest_link(&server, &alice, "Standup", "3600").await;
    server.clock.advance(3601);
    let late = guest.get(&unused).await;
    late.assert_status(403);
    assert!(late.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_guest_link_from_another_secret_is_refused() {
    // The same room and expiry, made by a deployment with another app_secret.
    let server = start("").await;
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let link = make_guest_link(&server, &alice, "Standup", "3600").await;
    let token = link.split("?invite=").nth(1).unwrap().to_string();

    let other = TestServer::start(&format!(
        "[jitsi]\nmeet_url = \"{MEET}\"\napp_id = \"jitsi\"\napp_secret = \"{}\"\n",
        "z".repeat(40)
    ))
    .await;
    let page = Browser::new()
        .get(&other.url(&format!("/jitsi/Standup?invite={token}")))
        .await;
    page.assert_status(403);
    assert!(page.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_only_moderators_make_guest_links_with_a_valid_form() {
    let server = start("").await;

    // Bob is no moderator: 403 on the page and on the POST.
    let bob = signed_in(&server, BOB, BOB_PASSWORD).await;
    let page = bob.get(&server.url("/jitsi/invite/Standup")).await;
    page.assert_status(403);
    assert!(guest_link(&page.text).is_none());
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let alice_page = alice.get(&server.url("/jitsi/invite/Standup")).await;
    let csrf = input_value(&alice_page.text, "csrf").unwrap();
    let post = bob
        .post_form(
            &server.url("/jitsi/invite/Standup"),
            &[("csrf", &csrf), ("valid_for", "3600")],
        )
        .await;
    post.assert_status(403);
    assert!(guest_link(&post.text).is_none());

    // Alice, but without the form's csrf, with another browser's, or another room's.
    for fields in [
        vec![("valid_for", "3600")],
        vec![("csrf", ""), ("valid_for", "3600")],
        vec![("csrf", "forged"), ("valid_for", "3600")],
    ] {
        let post = alice
            .post_form(&server.url("/jitsi/invite/Standup"), &fields)
            .await;
        post.assert_status(403);
        assert!(guest_link(&post.text).is_none(), "{fields:?}");
    }
    let other_room = alice
        .post_form(
            &server.url("/jitsi/invite/Other"),
            &[("csrf", &csrf), ("valid_for", "3600")],
        )
        .await;
    other_room.assert_status(403);
    assert!(guest_link(&other_room.text).is_none());

    // Lifetimes outside a minute .. 30 days.
    for valid_for in ["", "0", "59", "-3600", "abc", "2592001", "1e9"] {
        let post = alice
            .post_form(
                &server.url("/jitsi/invite/Standup"),
                &[("csrf", &csrf), ("valid_for", valid_for)],
            )
            .await;
        post.assert_status(400);
        assert!(guest_link(&post.text).is_none(), "valid_for={valid_for}");
    }
    let link = make_guest_link(&server, &alice, "Standup", "2592000").await;
    server.clock.advance(2_592_000 - 10);
    let page = Browser::new().get(&link).await;
    page.assert_status(302);
    // Its token ends with the link, not three hours later.
    let claims = prosody::verify(
        &token_in(&raw_location(&page)),
        &docker(),
        server.now(),
        "standup",
        MUC,
    )
    .unwrap();
    assert!(
        claims["exp"].as_i64().unwrap() <= server.now() + 10,
        "{claims:?}"
    );

    // Signed out: the invitation page asks for a sign-in, then comes back to it.
    let stranger = Browser::new();
    let landing = stranger.get(&server.url("/jitsi/invite/Standup")).await;
    landing.assert_status(200);
    let done = stranger.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        done.redirect().as_str(),
        server.url("/jitsi/invite/Standup")
    );
    let page = stranger.get(&server.url("/jitsi/invite/Standup")).await;
    page.assert_status(200);
    assert!(input_value(&page.text, "csrf").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_a_room_named_invite_is_still_a_room() {
    let server = start("").await;
    let browser = Browser::new();
    let before = server.now();
    let done = sign_in_via(&server, &browser, "invite", ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    let location = raw_location(&done);
    assert!(
        location.starts_with(&format!("{MEET}/invite?jwt=")),
        "{location}"
    );
    check_token(&token_in(&location), "invite", before, server.now());
    let page = browser.get(&server.url("/jitsi/invite")).await;
    page.assert_status(302);
    check_token(
        &token_in(&raw_location(&page)),
        "invite",
        before,
        server.now(),
    );
    // And invitations to it work too.
    let link = make_guest_link(&server, &browser, "invite", "3600").await;
    let page = Browser::new().get(&link).await;
    page.assert_status(302);
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "invite",
        before,
        server.now(),
    );
    assert_eq!(claims["context"]["user"]["affiliation"], "member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_guest_tokens_name_the_room_even_with_wildcard_claims() {
    let server = start("room_claim = \"wildcard\"").await;
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let link = make_guest_link(&server, &alice, "Standup", "3600").await;
    let before = server.now();
    let page = Browser::new().get(&link).await;
    page.assert_status(302);
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "standup",
        before,
        server.now(),
    );
    assert_eq!(claims["room"], "standup", "a guest link opens one room");
    assert!(prosody::verify(
        &token_in(&raw_location(&page)),
        &docker(),
        server.now(),
        "other",
        MUC
    )
    .is_err());
    // The signed-in user's token is the wildcard one.
    let page = alice.get(&server.url("/jitsi/MyRoom")).await;
    let claims = check_token(
        &token_in(&raw_location(&page)),
        "anyroom",
        before,
        server.now(),
    );
    assert_eq!(claims["room"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_without_configuration_is_not_found() {
    let server = TestServer::start("").await;
    let browser = Browser::new();
    for path in ["/jitsi/MyRoom", "/jitsi/invite/MyRoom"] {
        let page = browser.get(&server.url(path)).await;
        page.assert_status(404);
        assert!(page.location().is_none());
        assert!(page.login_form().is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Guest links: counted uses, revocation, the pre-join screen

/// The invitation page of `room` for alice: its csrf token.
async fn invite_csrf(server: &TestServer, browser: &Browser, room: &str) -> String {
    let page = browser
        .get(&server.url(&format!("/jitsi/invite/{room}")))
        .await;
    page.assert_status(200);
    input_value(&page.text, "csrf").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_guest_link_uses_are_counted_and_racing_guests_get_one_each() {
    let server = start("").await;
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let csrf = invite_csrf(&server, &alice, "Standup").await;
    let made = alice
        .post_form(
            &server.url("/jitsi/invite/Standup"),
            &[("csrf", &csrf), ("valid_for", "3600"), ("uses", "3")],
        )
        .await;
    made.assert_status(200);
    let link = guest_link(&made.text).unwrap();
    for bad in ["0", "101", "x"] {
        let page = alice
            .post_form(
                &server.url("/jitsi/invite/Standup"),
                &[("csrf", &csrf), ("valid_for", "3600"), ("uses", bad)],
            )
            .await;
        page.assert_status(400);
        assert!(guest_link(&page.text).is_none(), "uses={bad}");
    }

    // Ten guests at once for three uses: exactly three get in, each with their own id.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let link = link.clone();
            tokio::spawn(async move { Browser::new().get(&link).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let page = t.await.unwrap();
        match page.status {
            302 => {
                let claims = jwt_claims(&token_in(&raw_location(&page)));
                ids.push(
                    claims["context"]["user"]["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            403 => {
                assert!(page.location().is_none());
                refused += 1;
            }
            s => panic!("guest link answered {s}: {}", page.text),
        }
    }
    assert_eq!((ids.len(), refused), (3, 7), "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);

    // The last use of a single-use link, raced by two guests: one gets in.
    let single = make_guest_link(&server, &alice, "Standup", "3600").await;
    let (first, second) = (Browser::new(), Browser::new());
    let (a, b) = tokio::join!(first.get(&single), second.get(&single));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [302, 403]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_guest_link_creator_revokes_it() {
    let server = start("").await;
    let alice = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let link = make_guest_link(&server, &alice, "Standup", "3600").await;
    let page = alice.get(&server.url("/jitsi/invite/Standup")).await;
    // The page lists it, with a revoke form of its own after the one that makes links.
    assert_eq!(
        form_action(&page.text).unwrap(),
        server.url("/jitsi/invite/Standup")
    );
    let id = input_value(&page.text, "id").expect("a listed link with a revoke form");
    let csrf = input_value(&page.text, "csrf").unwrap();
    assert!(html_unescape(&page.text).contains(&server.url("/jitsi/invite/Standup/revoke")));

    // Another moderator (a second admin) cannot revoke alice's link, nor a forged form.
    let carol_password = "carol-password-1";
    let hash = {
        let params = doorman::accounts::password::owasp_params().unwrap();
        tokio::task::spawn_blocking(move || {
            doorman::accounts::password::hash_blocking(&params, carol_password).unwrap()
        })
        .await
        .unwrap()
    };
    doorman::accounts::users::create(
        &*server.state.store,
        doorman::accounts::NewUser {
            username: "carol".into(),
            email: None,
            email_verified: false,
            name: None,
            groups: vec!["admins".into()],
            password_hash: Some(hash),
        },
        server.now(),
    )
    .await
    .unwrap();
    let carol = signed_in(&server, "carol", carol_password).await;
    let carol_csrf = invite_csrf(&server, &carol, "Standup").await;
    let page = carol
        .post_form(
            &server.url("/jitsi/invite/Standup/revoke"),
            &[("csrf", &carol_csrf), ("id", &id)],
        )
        .await;
    page.assert_status(404);
    let page = alice
        .post_form(
            &server.url("/jitsi/invite/Standup/revoke"),
            &[("csrf", "forged"), ("id", &id)],
        )
        .await;
    page.assert_status(403);

    let page = alice
        .post_form(
            &server.url("/jitsi/invite/Standup/revoke"),
            &[("csrf", &csrf), ("id", &id)],
        )
        .await;
    page.assert_status(200);
    assert!(page.text.contains("revoked"), "{}", page.text);
    assert!(input_value(&page.text, "id").is_none(), "no longer listed");
    let guest = Browser::new().get(&link).await;
    guest.assert_status(403);
    assert!(guest.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_state_cannot_skip_the_prejoin_screen() {
    // Another site links a signed-in moderator to its room with the flag that skips the
    // pre-join screen: the meeting opens with the screen (the click stays the user's).
    let server = start("").await;
    let browser = signed_in(&server, ALICE, ALICE_PASSWORD).await;
    let state = json!({
        "config.prejoinConfig.enabled": false,
        "config.startWithAudioMuted": true,
    });
    let page = browser
        .get(&with_state(&server, "AttackersRoom", &state))
        .await;
    page.assert_status(302);
    assert_eq!(
        hash_params(&raw_location(&page)),
        vec!["config.startWithAudioMuted=true"]
    );
    // Through a sign-in too.
    let fresh = Browser::new();
    let landing = fresh
        .get(&with_state(&server, "AttackersRoom", &state))
        .await;
    let done = fresh.submit_login(&landing, ALICE, ALICE_PASSWORD).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        hash_params(&raw_location(&done)),
        vec!["config.startWithAudioMuted=true"]
    );
    // A guest link's state neither.
    let link = make_guest_link(&server, &browser, "Standup", "3600").await;
    let mut url = Url::parse(&link).unwrap();
    url.query_pairs_mut().append_pair(
        "state",
        &json!({"config.prejoinConfig.enabled": false}).to_string(),
    );
    let page = Browser::new().get(url.as_str()).await;
    page.assert_status(302);
    assert!(hash_params(&raw_location(&page)).is_empty());
}
