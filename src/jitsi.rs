//! The Jitsi Meet bridge: Jitsi's `TOKEN_AUTH_URL` points at `/jitsi/{room}`; doorman signs the
//! user in (or reuses the SSO session) and sends them back to the room with an HS256 token that
//! Prosody's token verifier accepts (../shared/reference/jitsi.md §3). The redirect is always
//! built from the configured `meet_url`, never from the request. Guests get signed links for one
//! room, each admitting a counted number of guests (one by default; counted in the store, so
//! replicas agree) until it expires or its creator revokes it; a guest's token never outlives
//! its link. The rules are plain functions below; the handlers at the end only translate.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

use crate::config::{JitsiConfig, RoomClaim};
use crate::error::WebError;
use crate::login;
use crate::session::CookieNames;
use crate::signin::Purpose;
use crate::state::AppState;
use crate::store::{GuestLink, Timestamp, User};
use crate::web::{live_session, Browser, ClientIp, Cookies};

pub mod paths {
    pub const ROOM: &str = "/jitsi/{room}";
    pub const INVITE: &str = "/jitsi/invite/{room}";
    /// The creator of a guest link revokes it here (form fields `csrf`, `id`).
    pub const INVITE_REVOKE: &str = "/jitsi/invite/{room}/revoke";
}

/// The longest guest link.
const MAX_INVITE: i64 = 30 * 86_400;
/// The most guests one link may admit.
const MAX_USES: i64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::ROOM, get(room))
        .route(paths::INVITE, get(invite_page).post(invite_create))
        .route(paths::INVITE_REVOKE, post(invite_revoke))
}

/// An HMAC that could not be computed: the token or link is refused, never signed with an
/// empty tag.
#[derive(Debug, thiserror::Error)]
#[error("the HMAC key cannot be used")]
pub struct MacError;

/// HMAC-SHA256 over `parts`, from a MAC that may have failed to build.
fn finish_mac(
    mac: Result<Hmac<Sha256>, hmac::digest::InvalidLength>,
    parts: &[&[u8]],
) -> Result<Vec<u8>, MacError> {
    let mut mac = mac.map_err(|_| MacError)?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, MacError> {
    finish_mac(<Hmac<Sha256> as Mac>::new_from_slice(key), parts)
}

// ---- rules ----

/// Characters jitsi-meet strips from room names, plus `\`: a name holding one is not a room
/// Jitsi would open under that name.
const EXCLUDED: &[char] = &[
    ':', '?', '#', '[', ']', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '>', '<',
    '/', '"', '\\', '%',
];

/// A room name as Jitsi would accept it (already percent-decoded once).
pub fn validate_room(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("The room name is empty.");
    }
    if name.len() > 200 {
        return Err("The room name is longer than 200 bytes.");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("The room name contains spaces or control characters.");
    }
    if name.chars().any(|c| EXCLUDED.contains(&c)) {
        return Err("The room name contains characters Jitsi does not allow in room names.");
    }
    if name == "." || name.contains("..") {
        return Err("The room name is not valid.");
    }
    Ok(())
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is percent-encoded.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// jitsi-meet's backend room name ("roomSafe"): NFKC, lower case, encodeURIComponent, lower
/// case again (the hex digits), so `Тест` and `тест` are the same MUC room.
pub fn room_safe(name: &str) -> String {
    let normalized: String = name.nfkc().collect::<String>().to_lowercase();
    encode_uri_component(&normalized).to_lowercase()
}

/// Who the token speaks for.
pub enum Participant<'a> {
    User {
        user: &'a User,
        moderator: bool,
        lobby_bypass: bool,
    },
    Guest,
}

/// Whether a signed-in user may join at all (`allowed_groups`).
pub fn may_join(config: &JitsiConfig, user: &User) -> bool {
    match &config.allowed_groups {
        None => true,
        Some(groups) => user.groups.iter().any(|g| groups.contains(g)),
    }
}

fn in_any(user: &User, groups: &[String]) -> bool {
    user.groups.iter().any(|g| groups.contains(g))
}

pub fn participant<'a>(config: &JitsiConfig, user: &'a User) -> Participant<'a> {
    Participant::User {
        user,
        moderator: in_any(user, &config.moderator_groups),
        lobby_bypass: in_any(user, &config.lobby_bypass_groups),
    }
}

/// The HS256 token: header exactly `{"alg":"HS256","typ":"JWT"}`, key the raw bytes of
/// app_secret, integer iat/nbf/exp, no `features` (even an empty one strips moderators'
/// recording rights), absent profile fields omitted (never null). `not_after` caps `exp` (a
/// guest's token ends with its link).
pub fn mint(
    config: &JitsiConfig,
    who: &Participant<'_>,
    room: &str,
    guest_exact: bool,
    now: Timestamp,
    not_after: Option<Timestamp>,
) -> Result<String, MacError> {
    let room_claim = match (config.room_claim, who, guest_exact) {
        (RoomClaim::Wildcard, Participant::User { .. }, _) => "*".to_string(),
        _ => room_safe(room),
    };
    let mut user = Map::new();
    match who {
        Participant::User {
            user: u,
            moderator,
            lobby_bypass,
        } => {
            user = crate::oidc::claims::jitsi_context_user(u);
            user.insert(
                "affiliation".into(),
                Value::String(if *moderator { "owner" } else { "member" }.into()),
            );
            user.insert("moderator".into(), Value::Bool(*moderator));
            if *lobby_bypass {
                user.insert("lobby_bypass".into(), Value::Bool(true));
            }
        }
        Participant::Guest => {
            user.insert(
                "id".into(),
                Value::String(format!("guest-{}", crate::secrets::random_id(8))),
            );
            user.insert("name".into(), Value::String("Guest".into()));
            user.insert("affiliation".into(), Value::String("member".into()));
            user.insert("moderator".into(), Value::Bool(false));
        }
    }
    let lifetime = i64::try_from(config.token_lifetime.as_secs()).unwrap_or(3 * 3600);
    let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(60);
    let claims = json!({
        "iss": config.issuer,
        "aud": config.audience,
        "sub": config.subject,
        "room": room_claim,
        "iat": now,
        "nbf": now - skew,
        "exp": not_after.map_or(now + lifetime, |cap| cap.min(now + lifetime)),
        "context": {"user": user},
    });
    sign_hs256(config.app_secret.as_bytes(), &claims)
}

const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn sign_hs256(secret: &[u8], claims: &Value) -> Result<String, MacError> {
    let mut token = URL_SAFE_NO_PAD.encode(HS256_HEADER);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = hmac_sha256(secret, &[token.as_bytes()])?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag));
    Ok(token)
}

/// Hash parameters jitsi-meet's `{state}` may carry that doorman passes on (scalars only; the
/// room and tenant inside the state are not trusted).
const STATE_KEYS: &[&str] = &[
    "config.startWithAudioMuted",
    "config.startWithVideoMuted",
    "config.startAudioOnly",
    "config.prejoinConfig.enabled",
];

/// The flag that skips jitsi-meet's pre-join screen when false.
const PREJOIN_FLAG: &str = "config.prejoinConfig.enabled";

/// The allow-listed `config.*` booleans of jitsi-meet's `state` parameter. The state comes from
/// whoever made the link, another site included: a flag that skips the pre-join screen (which
/// would drop a signed-in user into that site's room with no click) is passed on only when the
/// operator chose `skip_prejoin`.
pub fn hash_from_state(state: Option<&str>, skip_prejoin: bool) -> Vec<(String, bool)> {
    let Some(value) = state.and_then(|s| serde_json::from_str::<Value>(s).ok()) else {
        return Vec::new();
    };
    STATE_KEYS
        .iter()
        .filter_map(|k| {
            value
                .get(*k)
                .and_then(Value::as_bool)
                .map(|b| (k.to_string(), b))
        })
        .filter(|(k, enabled)| skip_prejoin || *enabled || k != PREJOIN_FLAG)
        .collect()
}

/// `<meet_url>/<room>?jwt=<token>` (or `#jwt="<token>"`), with hash parameters. Always built
/// from the configured meet_url: no open redirect.
pub fn redirect_url(
    config: &JitsiConfig,
    room: &str,
    token: &str,
    hash: &[(String, bool)],
) -> String {
    let mut url = format!(
        "{}/{}",
        config.meet_url.as_str().trim_end_matches('/'),
        encode_uri_component(room)
    );
    let mut fragment: Vec<String> = Vec::new();
    if config.token_in_fragment {
        fragment.push(format!("jwt=\"{token}\""));
    } else {
        url.push_str("?jwt=");
        url.push_str(token);
    }
    let mut hash: Vec<(String, bool)> = hash.to_vec();
    if config.skip_prejoin
        && !hash
            .iter()
            .any(|(k, _)| k == "config.prejoinConfig.enabled")
    {
        hash.push(("config.prejoinConfig.enabled".into(), false));
    }
    fragment.extend(hash.iter().map(|(k, v)| format!("{k}={v}")));
    if !fragment.is_empty() {
        url.push('#');
        url.push_str(&fragment.join("&"));
    }
    url
}

/// A guest link's token: the room (roomSafe), the link's id (its uses are counted in the
/// store) and its expiry, MACed with a key derived from app_secret, so only this deployment
/// makes them and each opens one room until it expires.
pub fn invite_token(
    config: &JitsiConfig,
    room: &str,
    id: &str,
    expires_at: Timestamp,
) -> Result<String, MacError> {
    let body =
        URL_SAFE_NO_PAD.encode(json!({"r": room_safe(room), "i": id, "e": expires_at}).to_string());
    let tag = invite_mac(config, &body)?;
    Ok(format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

fn invite_mac(config: &JitsiConfig, body: &str) -> Result<Vec<u8>, MacError> {
    hmac_sha256(
        config.app_secret.as_bytes(),
        &[b"doorman jitsi guest link v1\0", body.as_bytes()],
    )
}

/// What a genuine guest link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: String,
    pub expires_at: Timestamp,
}

/// The guest link, if it is genuine, unexpired and for this room (whether it still has a use
/// left is the store's to say). Links without an id (made before uses were counted) are not.
pub fn read_invite(
    config: &JitsiConfig,
    token: &str,
    room: &str,
    now: Timestamp,
) -> Option<Invite> {
    let (body, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let expected = invite_mac(config, body).ok()?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_slice(),
        tag.as_slice(),
    )) {
        return None;
    }
    let claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())?;
    if claims.get("r").and_then(Value::as_str) != Some(room_safe(room).as_str()) {
        return None;
    }
    let expires_at = claims
        .get("e")
        .and_then(Value::as_i64)
        .filter(|e| now < *e)?;
    let id = claims.get("i").and_then(Value::as_str)?.to_string();
    Some(Invite { id, expires_at })
}

/// The number of guests a link admits, from the form: one unless said otherwise.
pub fn parse_uses(value: Option<&str>) -> Option<i64> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Some(1),
        Some(v) => v.parse::<i64>().ok().filter(|n| (1..=MAX_USES).contains(n)),
    }
}

// ---- handlers ----

fn config(state: &AppState) -> Result<&JitsiConfig, WebError> {
    state.config.jitsi.as_ref().ok_or_else(|| {
        WebError::page(
            StatusCode::NOT_FOUND,
            "Jitsi is not set up here",
            "This doorman has no [jitsi] configuration.",
        )
    })
}

fn room_from(path: Result<Path<String>, PathRejection>) -> Result<String, WebError> {
    let bad = |m: &str| WebError::page(StatusCode::BAD_REQUEST, "This room name is not valid", m);
    let Path(room) = path.map_err(|_| bad("The room name is not valid text."))?;
    validate_room(&room).map_err(bad)?;
    Ok(room)
}

/// A 302 that is never cached and never leaks the token as a Referer.
fn to_meet(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, v),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => {
            WebError::Internal("the meeting URL is not a valid header".into()).into_response()
        }
    }
}

fn denied(user: &User) -> WebError {
    tracing::warn!(target: "audit", event = "jitsi", user = %user.username, outcome = "denied");
    WebError::page(
        StatusCode::FORBIDDEN,
        "You cannot join this meeting",
        "Your account is not in a group that may use this Jitsi server. Ask the operator.",
    )
}

/// Where a signed-in user goes for a room: the meeting with a fresh token, or (not allowed) the
/// room's doorman address, which answers with the 403 page.
pub fn destination(
    state: &AppState,
    room: &str,
    hash: &[(String, bool)],
    user: &User,
) -> Result<String, WebError> {
    let config = config(state)?;
    if !may_join(config, user) {
        return Ok(state.url(&format!("/jitsi/{}", encode_uri_component(room))));
    }
    let token = mint(
        config,
        &participant(config, user),
        room,
        false,
        state.now(),
        None,
    )
    .map_err(|e| WebError::Internal(e.to_string()))?;
    tracing::info!(target: "audit", event = "jitsi_token", user = %user.username, room = %room_safe(room));
    Ok(redirect_url(config, room, &token, hash))
}

/// The address of the room's TOKEN_AUTH_URL page, with Jitsi's `state`.
fn room_url(state: &AppState, room: &str, jitsi_state: Option<&str>) -> String {
    let mut url = state.url(&format!("/jitsi/{}", encode_uri_component(room)));
    if let Some(s) = jitsi_state {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", s)
            .finish();
        url = format!("{url}?{query}");
    }
    url
}

/// The sign-in that `GET /jitsi/{room}` began has finished: straight on to the meeting (the
/// same answer the room page gives a signed-in user), without a hop back through doorman.
/// None for any other doorman URL under `/jitsi/`.
pub fn resume(state: &AppState, url: &str, user: &User) -> Result<Option<String>, WebError> {
    let Some(rest) = url.strip_prefix(&state.url("/jitsi/")) else {
        return Ok(None);
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.contains('/') {
        return Ok(None);
    }
    let Ok(room) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return Ok(None);
    };
    if validate_room(&room).is_err() {
        return Ok(None);
    }
    let jitsi_state = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let hash = hash_from_state(jitsi_state.as_deref(), config(state)?.skip_prejoin);
    destination(state, &room, &hash, user).map(Some)
}

#[derive(Debug, Deserialize)]
struct RoomQuery {
    state: Option<String>,
    invite: Option<String>,
}

/// GET /jitsi/{room}: SSO → straight to the meeting; no session → the landing page.
async fn room(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    path: Result<Path<String>, PathRejection>,
    Query(q): Query<RoomQuery>,
) -> Result<Response, WebError> {
    let config = config(&state)?;
    let room = room_from(path)?;
    let hash = hash_from_state(q.state.as_deref(), config.skip_prejoin);
    if let Some(invite) = q.invite.as_deref() {
        let now = state.now();
        let Some(invite) = read_invite(config, invite, &room, now) else {
            return Err(WebError::page(StatusCode::FORBIDDEN, "This guest link is not valid", "It has expired or is for another room. Ask the person who invited you for a new one."));
        };
        // One use, taken atomically: of two guests racing for the last one, one gets in.
        if !state
            .store
            .use_guest_link(&invite.id, &room_safe(&room), now)
            .await?
        {
            tracing::info!(target: "audit", event = "jitsi_guest_link", outcome = "refused", room = %room_safe(&room), "guest link used up or revoked");
            return Err(WebError::page(StatusCode::FORBIDDEN, "This guest link has been used", "It has let in as many guests as it was made for, or it was revoked. Ask the person who invited you for a new one."));
        }
        tracing::info!(target: "audit", event = "jitsi_token", user = "guest", room = %room_safe(&room));
        let token = mint(
            config,
            &Participant::Guest,
            &room,
            true,
            now,
            Some(invite.expires_at),
        )
        .map_err(|e| WebError::Internal(e.to_string()))?;
        return Ok(to_meet(&redirect_url(config, &room, &token, &hash)));
    }
    if let Some((_, user)) = live_session(&state, &cookies).await? {
        if !may_join(config, &user) {
            return Err(denied(&user));
        }
        return Ok(to_meet(&destination(&state, &room, &hash, &user)?));
    }
    // Sign in first, then continue here (`resume` finishes without the extra hop).
    let url = room_url(&state, &room, q.state.as_deref());
    login::begin(&state, &cookies, ip, Purpose::Continue { url: Some(url) }).await
}

#[derive(Serialize)]
struct InvitePage<'a> {
    base: &'a str,
    room: &'a str,
    action: &'a str,
    revoke_action: &'a str,
    csrf: &'a str,
    link: Option<&'a str>,
    expires: Option<&'a str>,
    /// How many guests the link just made admits.
    uses: Option<i64>,
    /// The creator's live links for this room.
    links: Vec<LinkView>,
    notice: Option<&'a str>,
}

#[derive(Serialize)]
struct LinkView {
    id: String,
    expires: String,
    uses: i64,
    uses_left: i64,
}

fn invite_purpose(room: &str) -> String {
    format!("jitsi-invite:{}", room_safe(room))
}

/// The signed-in moderator behind this request, or the reason why not.
/// A moderator's form post for `room`: the moderator, with the form's CSRF token checked
/// against this browser's cookie.
async fn moderator_form(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    room: &str,
    csrf: &str,
) -> Result<Result<User, Response>, WebError> {
    let user = match moderator(state, cookies, ip, room).await? {
        Ok(u) => u,
        Err(resp) => return Ok(Err(resp)),
    };
    let browser = cookies
        .get(CookieNames::of(&state.config).browser)
        .unwrap_or_default();
    if !state.csrf.verify(&invite_purpose(room), browser, csrf) {
        return Err(form_not_verified());
    }
    Ok(Ok(user))
}

async fn moderator(
    state: &AppState,
    cookies: &Cookies,
    ip: std::net::IpAddr,
    room: &str,
) -> Result<Result<User, Response>, WebError> {
    let config = config(state)?;
    let Some((_, user)) = live_session(state, cookies).await? else {
        // Sign in first, then come back here.
        let rd = state.url(&format!("/jitsi/invite/{}", encode_uri_component(room)));
        return Ok(Err(login::begin(
            state,
            cookies,
            ip,
            Purpose::Continue { url: Some(rd) },
        )
        .await?));
    };
    if !in_any(&user, &config.moderator_groups) {
        return Err(WebError::page(
            StatusCode::FORBIDDEN,
            "Only moderators can invite guests",
            "Your account is not in a moderator group of this Jitsi server.",
        ));
    }
    Ok(Ok(user))
}

/// What the invitation page shows besides its form.
#[derive(Default)]
struct Shown<'a> {
    link: Option<&'a str>,
    expires: Option<&'a str>,
    uses: Option<i64>,
    notice: Option<&'a str>,
}

/// The invitation page for `user`, with their live links for the room.
async fn render_invite(
    state: &AppState,
    room: &str,
    user: &User,
    csrf: &str,
    shown: Shown<'_>,
) -> Result<Response, WebError> {
    let now = state.now();
    let links = state
        .store
        .list_guest_links(&user.id, &room_safe(room), now)
        .await?
        .into_iter()
        .map(|l: GuestLink| LinkView {
            expires: crate::config::format_duration(std::time::Duration::from_secs(
                u64::try_from(l.expires_at - now).unwrap_or(0),
            )),
            id: l.id,
            uses: l.uses,
            uses_left: l.uses_left,
        })
        .collect();
    let action = state.url(&format!("/jitsi/invite/{}", encode_uri_component(room)));
    let revoke_action = format!("{action}/revoke");
    let html = state.templates.render(
        "jitsi_invite.html",
        InvitePage {
            base: state.issuer(),
            room,
            action: &action,
            revoke_action: &revoke_action,
            csrf,
            link: shown.link,
            expires: shown.expires,
            uses: shown.uses,
            links,
            notice: shown.notice,
        },
    );
    Ok(crate::web::html(StatusCode::OK, html))
}

/// GET /jitsi/invite/{room}: a moderator chooses how long a guest link lasts.
async fn invite_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, WebError> {
    let room = room_from(path)?;
    let user = match moderator(&state, &cookies, ip, &room).await? {
        Ok(u) => u,
        Err(resp) => return Ok(resp),
    };
    let browser = Browser::of(&state, &cookies);
    let csrf = state.csrf.token(&invite_purpose(&room), &browser.value);
    let mut resp = render_invite(&state, &room, &user, &csrf, Shown::default()).await?;
    browser.keep(&state, &mut resp);
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    /// Seconds.
    #[serde(default)]
    valid_for: String,
    /// How many guests the link admits (default 1).
    #[serde(default)]
    uses: Option<String>,
}

fn form_not_verified() -> WebError {
    WebError::page(
        StatusCode::FORBIDDEN,
        "This form could not be verified",
        "Open the invitation page again and retry.",
    )
}

/// POST /jitsi/invite/{room}: makes the link.
async fn invite_create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<InviteForm>,
) -> Result<Response, WebError> {
    let config = config(&state)?;
    let room = room_from(path)?;
    let user = match moderator_form(&state, &cookies, ip, &room, &form.csrf).await? {
        Ok(u) => u,
        Err(resp) => return Ok(resp),
    };
    let valid_for = form
        .valid_for
        .parse::<i64>()
        .ok()
        .filter(|s| (60..=MAX_INVITE).contains(s))
        .ok_or_else(|| {
            WebError::bad_request(
                "Choose how long the link is valid: between a minute and 30 days.",
            )
        })?;
    let uses = parse_uses(form.uses.as_deref()).ok_or_else(|| {
        WebError::bad_request(format!(
            "Choose how many guests the link lets in: from 1 to {MAX_USES}."
        ))
    })?;
    let now = state.now();
    let expires_at = now + valid_for;
    let id = crate::secrets::random_id(16);
    let token = invite_token(config, &room, &id, expires_at)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    state
        .store
        .create_guest_link(&GuestLink {
            id,
            room: room_safe(&room),
            created_by: user.id.clone(),
            uses,
            uses_left: uses,
            created_at: now,
            expires_at,
            revoked_at: None,
        })
        .await?;
    let link = format!(
        "{}?invite={token}",
        state.url(&format!("/jitsi/{}", encode_uri_component(&room)))
    );
    tracing::info!(target: "audit", event = "jitsi_invite", user = %user.username, room = %room_safe(&room), valid_for, uses);
    let expires = crate::config::format_duration(std::time::Duration::from_secs(
        u64::try_from(valid_for).unwrap_or(0),
    ));
    render_invite(
        &state,
        &room,
        &user,
        &form.csrf,
        Shown {
            link: Some(&link),
            expires: Some(&expires),
            uses: Some(uses),
            notice: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

/// POST /jitsi/invite/{room}/revoke: the link's creator ends it before it expires.
async fn invite_revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: Cookies,
    path: Result<Path<String>, PathRejection>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    let room = room_from(path)?;
    let user = match moderator_form(&state, &cookies, ip, &room, &form.csrf).await? {
        Ok(u) => u,
        Err(resp) => return Ok(resp),
    };
    // Only the creator's own links: the store matches the id and the creator together.
    if !state
        .store
        .revoke_guest_link(&form.id, &user.id, state.now())
        .await?
    {
        return Err(WebError::page(
            StatusCode::NOT_FOUND,
            "No such guest link",
            "It was already revoked, or it is not one of your links.",
        ));
    }
    tracing::info!(target: "audit", event = "jitsi_invite_revoked", user = %user.username, room = %room_safe(&room));
    render_invite(
        &state,
        &room,
        &user,
        &form.csrf,
        Shown {
            notice: Some("The guest link is revoked: it lets nobody in any more."),
            ..Shown::default()
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> JitsiConfig {
        JitsiConfig {
            meet_url: url::Url::parse("https://meet.example.com").unwrap(),
            app_id: "jitsi".into(),
            app_secret: "NmjPGpn+NjTe7oQUV9YqfaXiBULcsxYj".into(),
            issuer: "jitsi".into(),
            audience: "jitsi".into(),
            subject: "*".into(),
            room_claim: RoomClaim::Exact,
            token_lifetime: Duration::from_secs(3 * 3600),
            clock_skew: Duration::from_secs(60),
            allowed_groups: None,
            moderator_groups: vec!["admins".into()],
            lobby_bypass_groups: vec![],
            skip_prejoin: false,
            token_in_fragment: false,
        }
    }

    #[test]
    fn room_names() {
        for ok in ["MyRoom", "тест", "a-b_c.d", "invite"] {
            assert!(validate_room(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "..",
            ".",
            "a..b",
            "x\u{7}",
            "a?b",
            "a#b",
            "a@b",
            "a\\b",
            "a\"b",
            &"a".repeat(201),
        ] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_safe_matches_jitsi_meet() {
        assert_eq!(room_safe("MyRoom"), "myroom");
        assert_eq!(room_safe("Тест"), "%d1%82%d0%b5%d1%81%d1%82");
        assert_eq!(room_safe("тест"), "%d1%82%d0%b5%d1%81%d1%82");
        // NFKC: the ligature "ﬁ" is "fi".
        assert_eq!(room_safe("ﬁle"), "file");
    }

    #[test]
    fn header_is_exact_and_claims_have_no_nulls() {
        let user = User {
            id: "u1".into(),
            username: "ann".into(),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec!["admins".into()],
            password_hash: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        };
        let c = config();
        let token = mint(
            &c,
            &participant(&c, &user),
            "MyRoom",
            false,
            1_700_000_000,
            None,
        )
        .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["room"], "myroom");
        assert_eq!(claims["nbf"], 1_700_000_000 - 60);
        assert_eq!(claims["exp"], 1_700_000_000 + 3 * 3600);
        assert_eq!(claims["context"]["user"]["name"], "ann");
        assert_eq!(claims["context"]["user"]["affiliation"], "owner");
        assert!(
            claims["context"]["user"].get("email").is_none(),
            "absent, not null"
        );
        assert!(claims.get("features").is_none() && claims["context"].get("features").is_none());
        assert!(!token.contains("null") && !claims.to_string().contains("null"));
    }

    #[test]
    fn redirects_stay_on_meet_url() {
        let mut c = config();
        assert_eq!(
            redirect_url(&c, "My Room", "T", &[]),
            "https://meet.example.com/My%20Room?jwt=T"
        );
        c.token_in_fragment = true;
        c.skip_prejoin = true;
        assert_eq!(
            redirect_url(&c, "r", "T", &[]),
            "https://meet.example.com/r#jwt=\"T\"&config.prejoinConfig.enabled=false"
        );
        let hash = hash_from_state(
            Some(
                r#"{"room":"evil.example/x","config.startWithAudioMuted":true,"config.evil":"x"}"#,
            ),
            false,
        );
        assert_eq!(hash, vec![("config.startWithAudioMuted".to_string(), true)]);
    }

    #[test]
    fn a_state_cannot_skip_the_prejoin_screen_unless_the_operator_did() {
        let state = r#"{"config.prejoinConfig.enabled":false,"config.startWithVideoMuted":true}"#;
        assert_eq!(
            hash_from_state(Some(state), false),
            vec![("config.startWithVideoMuted".to_string(), true)]
        );
        assert_eq!(hash_from_state(Some(state), true).len(), 2);
        let on = r#"{"config.prejoinConfig.enabled":true}"#;
        assert_eq!(
            hash_from_state(Some(on), false),
            vec![("config.prejoinConfig.enabled".to_string(), true)]
        );
    }

    #[test]
    fn a_mac_that_cannot_be_built_is_an_error_not_an_empty_tag() {
        assert!(finish_mac(Err(hmac::digest::InvalidLength), &[b"body"]).is_err());
        let ok = finish_mac(<Hmac<Sha256> as Mac>::new_from_slice(b"k"), &[b"body"]).unwrap();
        assert_eq!(ok.len(), 32);
    }

    #[test]
    fn guest_tokens_end_with_their_link() {
        let c = config();
        let token = mint(&c, &Participant::Guest, "r", true, 1000, Some(1060)).unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["exp"], 1060);
        let long = mint(&c, &Participant::Guest, "r", true, 1000, Some(1_000_000)).unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(long.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["exp"], 1000 + 3 * 3600);
    }

    #[test]
    fn guest_links_open_one_room_until_they_expire() {
        let c = config();
        let t = invite_token(&c, "Standup", "link-1", 1000).unwrap();
        assert_eq!(
            read_invite(&c, &t, "standup", 999),
            Some(Invite {
                id: "link-1".into(),
                expires_at: 1000
            })
        );
        assert!(read_invite(&c, &t, "standup", 1000).is_none());
        assert!(read_invite(&c, &t, "other", 999).is_none());
        let mut forged = t.clone();
        forged.insert(0, 'x');
        assert!(read_invite(&c, &forged, "standup", 999).is_none());
        // A link from before uses were counted (no id) opens nothing.
        let body = URL_SAFE_NO_PAD.encode(json!({"r": "standup", "e": 1000}).to_string());
        let tag = invite_mac(&c, &body).unwrap();
        let old = format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert!(read_invite(&c, &old, "standup", 999).is_none());
        assert_eq!(parse_uses(None), Some(1));
        assert_eq!(parse_uses(Some("")), Some(1));
        assert_eq!(parse_uses(Some("3")), Some(3));
        for bad in ["0", "-1", "101", "x"] {
            assert_eq!(parse_uses(Some(bad)), None, "{bad}");
        }
    }
}
