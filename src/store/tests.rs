//! Tests of the SQLite store against the `Store` contract, each on a fresh database file in a
//! temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use super::sqlite::SqliteStore;
use super::*;

const NOW: Timestamp = 1_700_000_000;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("doorman.db")).unwrap()
}

/// A plain connection to the test database, to set up states the trait cannot reach.
fn raw(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("doorman.db")).unwrap()
}

fn h(n: u8) -> Hash {
    [n; 32]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn user(id: &str, username: &str, email: Option<&str>) -> User {
    User {
        id: id.into(),
        username: username.into(),
        email: email.map(Into::into),
        email_verified: false,
        name: Some("Alice Example".into()),
        given_name: Some("Alice".into()),
        family_name: None,
        picture: None,
        groups: vec!["admins".into(), "family".into()],
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        disabled: false,
        created_at: NOW,
        updated_at: NOW,
        last_login_at: None,
    }
}

fn grant(id: &str, user_id: &str) -> Grant {
    Grant {
        id: id.into(),
        client_id: "app".into(),
        user_id: user_id.into(),
        scope: "openid profile".into(),
        auth_time: NOW,
        amr: vec!["pwd".into()],
        nonce: Some("n-0S6_WzA2Mj".into()),
        created_at: NOW,
        expires_at: NOW + 30 * 86_400,
        revoked_at: None,
        sid: Some("sid-of-the-session".into()),
        acr: None,
    }
}

fn code(hash: Hash, grant_id: &str) -> AuthCode {
    AuthCode {
        hash,
        grant_id: grant_id.into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        created_at: NOW,
        expires_at: NOW + 60,
        used_at: None,
    }
}

fn access(hash: Hash, grant_id: &str, expires_at: Timestamp) -> AccessToken {
    AccessToken {
        hash,
        grant_id: grant_id.into(),
        client_id: "app".into(),
        user_id: "u1".into(),
        scope: "openid profile".into(),
        created_at: NOW,
        expires_at,
    }
}

fn refresh(hash: Hash, grant_id: &str, expires_at: Timestamp) -> RefreshToken {
    RefreshToken {
        hash,
        grant_id: grant_id.into(),
        client_id: "app".into(),
        user_id: "u1".into(),
        scope: "openid profile".into(),
        created_at: NOW,
        expires_at,
        used_at: None,
    }
}

fn session(hash: Hash, user_id: &str, expires_at: Timestamp) -> Session {
    Session {
        id_hash: hash,
        user_id: user_id.into(),
        auth_time: NOW,
        amr: vec!["pwd".into(), "otp".into()],
        created_at: NOW,
        last_seen_at: NOW,
        expires_at,
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Firefox".into()),
        sid: None,
    }
}

fn flow(hash: Hash, expires_at: Timestamp) -> Flow {
    Flow {
        id_hash: hash,
        browser_hash: h(200),
        payload: r#"{"kind":"authorize"}"#.into(),
        created_at: NOW,
        expires_at,
    }
}

fn key(kid: &str, active_from: Timestamp, retire_at: Option<Timestamp>) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        alg: "RS256".into(),
        private_pem: format!("-----BEGIN PRIVATE KEY-----\n{kid}\n-----END PRIVATE KEY-----\n"),
        created_at: NOW,
        active_from,
        retire_at,
    }
}

/// A store with user "u1" and grant "g1" (with code h(1)) already in it.
async fn with_grant(dir: &tempfile::TempDir) -> SqliteStore {
    let store = open(dir);
    store
        .create_user(&user("u1", "alice", Some("alice@example.com")))
        .await
        .unwrap();
    store
        .create_grant_with_code(&grant("g1", "u1"), &code(h(1), "g1"))
        .await
        .unwrap();
    store
}

async fn rotate(
    store: &SqliteStore,
    old: Hash,
    new: RefreshToken,
    now: Timestamp,
) -> RefreshRotation {
    store.rotate_refresh_token(&old, &new, now).await.unwrap()
}

fn conflict_field(err: StoreError) -> &'static str {
    match err {
        StoreError::Conflict { field } => field,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

// ---- opening ----

#[tokio::test]
async fn open_creates_private_file_and_parent_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("nested").join("doorman.db");
    let store = SqliteStore::open(&path).unwrap();
    store.ping().await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    // Side files exist while the store is open (WAL mode) and are private too.
    for suffix in ["-wal", "-shm"] {
        let side = path.with_file_name(format!("doorman.db{suffix}"));
        assert!(side.exists(), "{suffix} missing: not in WAL mode?");
        assert_eq!(mode(&side), 0o600, "{suffix}");
    }
}

#[tokio::test]
async fn open_tightens_an_existing_world_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doorman.db");
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn open_refuses_a_schema_newer_than_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doorman.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.add_signing_key(&key("k1", NOW, None)).await.unwrap();
    drop(store);

    let store = open(&dir);
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().username,
        "alice"
    );
    assert_eq!(store.list_signing_keys().await.unwrap().len(), 1);
}

// ---- settings ----

#[tokio::test]
async fn init_setting_keeps_the_first_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.ping().await.unwrap();
    assert_eq!(store.get_setting("csrf_key").await.unwrap(), None);
    assert_eq!(
        store.init_setting("csrf_key", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.init_setting("csrf_key", "second").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.get_setting("csrf_key").await.unwrap().as_deref(),
        Some("first")
    );
}

// ---- users ----

#[tokio::test]
async fn users_round_trip_and_lookups_ignore_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let alice = user("u1", "Alice", Some("Alice@Example.com"));
    store.create_user(&alice).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();

    assert_eq!(store.get_user("u1").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.get_user("nobody").await.unwrap(), None);
    assert_eq!(
        store.find_user_by_username("aLiCe").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.find_user_by_email("alice@example.COM").await.unwrap(),
        Some(alice)
    );
    assert_eq!(store.find_user_by_username("carol").await.unwrap(), None);
    assert_eq!(
        store.find_user_by_email("carol@example.com").await.unwrap(),
        None
    );

    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["Alice", "bob"]);
}

#[tokio::test]
async fn username_and_email_conflicts_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_user(&user("u1", "alice", Some("alice@example.com")))
        .await
        .unwrap();
    // Two users without an email do not conflict.
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    store.create_user(&user("u3", "carol", None)).await.unwrap();

    let err = store
        .create_user(&user("u4", "ALICE", None))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(err), "username");
    let err = store
        .create_user(&user("u4", "dave", Some("ALICE@example.com")))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(err), "email");

    // update_user: taking someone else's email conflicts too, and nothing changes.
    let mut bob = store.get_user("u2").await.unwrap().unwrap();
    bob.email = Some("alice@EXAMPLE.com".into());
    assert_eq!(
        conflict_field(store.update_user(&bob).await.unwrap_err()),
        "email"
    );
    assert_eq!(store.get_user("u2").await.unwrap().unwrap().email, None);
}

#[tokio::test]
async fn update_user_replaces_all_but_id_username_created_at() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_user(&user("u1", "alice", Some("alice@example.com")))
        .await
        .unwrap();

    let changed = User {
        id: "u1".into(),
        username: "mallory".into(),
        email: None,
        email_verified: true,
        name: None,
        given_name: Some("Al".into()),
        family_name: Some("Ice".into()),
        picture: Some("https://example.com/a.png".into()),
        groups: vec![],
        password_hash: None,
        disabled: true,
        created_at: NOW + 999,
        updated_at: NOW + 10,
        last_login_at: Some(NOW + 5),
    };
    store.update_user(&changed).await.unwrap();
    let stored = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        stored,
        User {
            username: "alice".into(),
            created_at: NOW,
            ..changed.clone()
        }
    );

    store.record_login("u1", NOW + 20).await.unwrap();
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().last_login_at,
        Some(NOW + 20)
    );

    let ghost = User {
        id: "nobody".into(),
        ..changed
    };
    assert!(matches!(
        store.update_user(&ghost).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.record_login("nobody", NOW).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn delete_user_cascades_to_sessions_grants_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store
        .create_session(&session(h(10), "u1", NOW + 3600))
        .await
        .unwrap();
    store
        .put_access_token(&access(h(20), "g1", NOW + 3600))
        .await
        .unwrap();
    store
        .put_refresh_token(&refresh(h(30), "g1", NOW + 3600))
        .await
        .unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    store
        .create_session(&session(h(11), "u2", NOW + 3600))
        .await
        .unwrap();

    store.delete_user("u1").await.unwrap();
    assert_eq!(store.get_user("u1").await.unwrap(), None);
    assert_eq!(store.get_session(&h(10), NOW).await.unwrap(), None);
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert_eq!(store.get_access_token(&h(20), NOW).await.unwrap(), None);
    assert_eq!(store.get_refresh_token(&h(30), NOW).await.unwrap(), None);
    assert_eq!(
        store.redeem_code(&h(1), NOW).await.unwrap(),
        CodeRedemption::NotFound
    );
    // Other users are untouched.
    assert!(store.get_session(&h(11), NOW).await.unwrap().is_some());
    assert!(matches!(
        store.delete_user("u1").await,
        Err(StoreError::NotFound)
    ));
}

// ---- sessions and flows ----

#[tokio::test]
async fn sessions_expire_and_can_be_touched_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    let s = session(h(10), "u1", NOW + 100);
    store.create_session(&s).await.unwrap();
    store
        .create_session(&session(h(11), "u1", NOW + 100))
        .await
        .unwrap();
    store
        .create_session(&session(h(12), "u1", NOW + 100))
        .await
        .unwrap();

    assert_eq!(
        store.get_session(&h(10), NOW).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(&h(10), NOW + 99).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.get_session(&h(10), NOW + 100).await.unwrap(), None);
    assert_eq!(store.get_session(&h(99), NOW).await.unwrap(), None);

    store.touch_session(&h(10), NOW + 50).await.unwrap();
    let touched = store.get_session(&h(10), NOW + 60).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, NOW + 50);
    assert_eq!(touched.amr, ["pwd", "otp"]);

    store.delete_session(&h(10)).await.unwrap();
    assert_eq!(store.get_session(&h(10), NOW).await.unwrap(), None);
    // Deleting again (double logout) is harmless.
    store.delete_session(&h(10)).await.unwrap();

    // A forward-auth session ends with the SSO session it is bound to (a password change and
    // disabling a user rely on it).
    store
        .create_forward_auth_session(&h(13), &h(11), NOW)
        .await
        .unwrap();
    assert_eq!(
        store.forward_auth_parent(&h(13)).await.unwrap(),
        Some(h(11))
    );
    assert_eq!(store.delete_user_sessions("u1").await.unwrap(), 2);
    assert_eq!(store.get_session(&h(11), NOW).await.unwrap(), None);
    assert_eq!(store.forward_auth_parent(&h(13)).await.unwrap(), None);
}

#[tokio::test]
async fn flows_expire_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let f = flow(h(40), NOW + 600);
    store.put_flow(&f).await.unwrap();
    assert_eq!(store.get_flow(&h(40), NOW).await.unwrap(), Some(f));
    assert_eq!(store.get_flow(&h(40), NOW + 600).await.unwrap(), None);
    store.delete_flow(&h(40)).await.unwrap();
    assert_eq!(store.get_flow(&h(40), NOW).await.unwrap(), None);
}

#[tokio::test]
async fn a_stored_hash_of_the_wrong_length_is_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    raw(&dir)
        .execute(
            "INSERT INTO flows VALUES (?1, x'0102', '{}', ?2, ?3)",
            rusqlite::params![h(41), NOW, NOW + 600],
        )
        .unwrap();
    assert!(matches!(
        store.get_flow(&h(41), NOW).await,
        Err(StoreError::Unavailable(_))
    ));
}

// ---- grants, codes and tokens ----

#[tokio::test]
async fn code_redeemed_twice_is_replayed_and_revokes_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    assert_eq!(
        store.get_grant("g1").await.unwrap(),
        Some(grant("g1", "u1"))
    );

    let CodeRedemption::Fresh(c, g) = store.redeem_code(&h(1), NOW + 5).await.unwrap() else {
        panic!("first redemption must be Fresh");
    };
    assert_eq!(c.used_at, Some(NOW + 5));
    assert_eq!(c.redirect_uri, "https://app.example/cb");
    assert_eq!(g, grant("g1", "u1"));

    store
        .put_access_token(&access(h(20), "g1", NOW + 3600))
        .await
        .unwrap();
    assert!(store
        .get_access_token(&h(20), NOW + 6)
        .await
        .unwrap()
        .is_some());

    let replay = store.redeem_code(&h(1), NOW + 7).await.unwrap();
    assert!(matches!(replay, CodeRedemption::Replayed(ref c) if c.hash == h(1)));
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 7)
    );
    assert_eq!(store.get_access_token(&h(20), NOW + 8).await.unwrap(), None);

    assert_eq!(
        store.redeem_code(&h(2), NOW).await.unwrap(),
        CodeRedemption::NotFound
    );
}

#[tokio::test]
async fn expired_codes_are_returned_fresh_for_the_caller_to_judge() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let CodeRedemption::Fresh(c, _) = store.redeem_code(&h(1), NOW + 3600).await.unwrap() else {
        panic!("expected Fresh");
    };
    assert_eq!(c.expires_at, NOW + 60);
}

#[tokio::test]
async fn revoking_grants() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store
        .create_grant_with_code(&grant("g2", "u1"), &code(h(2), "g2"))
        .await
        .unwrap();
    store
        .create_grant_with_code(&grant("g3", "u1"), &code(h(3), "g3"))
        .await
        .unwrap();
    store
        .put_access_token(&access(h(20), "g2", NOW + 3600))
        .await
        .unwrap();

    store.revoke_grant("g1", NOW + 1).await.unwrap();
    // Revoking again keeps the first time; an unknown grant is NotFound.
    store.revoke_grant("g1", NOW + 2).await.unwrap();
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 1)
    );
    assert!(matches!(
        store.revoke_grant("nope", NOW).await,
        Err(StoreError::NotFound)
    ));

    // Only the two still-live grants count.
    assert_eq!(store.revoke_user_grants("u1", NOW + 3).await.unwrap(), 2);
    assert_eq!(
        store.get_grant("g2").await.unwrap().unwrap().revoked_at,
        Some(NOW + 3)
    );
    assert_eq!(store.get_access_token(&h(20), NOW + 4).await.unwrap(), None);
    assert_eq!(store.revoke_user_grants("u1", NOW + 5).await.unwrap(), 0);
}

#[tokio::test]
async fn revoking_the_grants_of_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let mut other = grant("g2", "u1");
    other.sid = Some("another-session".into());
    store
        .create_grant_with_code(&other, &code(h(2), "g2"))
        .await
        .unwrap();
    let revoked = store
        .revoke_session_grants("u1", "sid-of-the-session", NOW + 1)
        .await
        .unwrap();
    assert_eq!(revoked, vec!["g1".to_string()]);
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 1)
    );
    assert_eq!(
        store.get_grant("g2").await.unwrap().unwrap().revoked_at,
        None
    );
    // Already revoked: nothing more to report.
    assert!(store
        .revoke_session_grants("u1", "sid-of-the-session", NOW + 2)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn access_tokens_expire_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let t = access(h(20), "g1", NOW + 3600);
    store.put_access_token(&t).await.unwrap();
    assert_eq!(store.get_access_token(&h(20), NOW).await.unwrap(), Some(t));
    assert_eq!(
        store.get_access_token(&h(20), NOW + 3600).await.unwrap(),
        None
    );
    store.delete_access_token(&h(20)).await.unwrap();
    assert_eq!(store.get_access_token(&h(20), NOW).await.unwrap(), None);
}

#[tokio::test]
async fn refresh_tokens_need_a_live_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let t = refresh(h(30), "g1", NOW + 86_400);
    store.put_refresh_token(&t).await.unwrap();
    assert_eq!(store.get_refresh_token(&h(30), NOW).await.unwrap(), Some(t));
    // Idle expiry of the token.
    assert_eq!(
        store.get_refresh_token(&h(30), NOW + 86_400).await.unwrap(),
        None
    );

    // Absolute expiry of the grant, even with a token that would live longer.
    store
        .put_refresh_token(&refresh(h(31), "g1", NOW + 60 * 86_400))
        .await
        .unwrap();
    assert!(store
        .get_refresh_token(&h(31), NOW + 29 * 86_400)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .get_refresh_token(&h(31), NOW + 30 * 86_400)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        rotate(&store, h(31), refresh(h(32), "g1", NOW), NOW + 31 * 86_400).await,
        RefreshRotation::Invalid
    );

    // Revoked grant.
    store.revoke_grant("g1", NOW + 1).await.unwrap();
    assert_eq!(
        store.get_refresh_token(&h(31), NOW + 2).await.unwrap(),
        None
    );
    assert_eq!(
        rotate(&store, h(31), refresh(h(33), "g1", NOW), NOW + 2).await,
        RefreshRotation::Invalid
    );
    // Nothing was stored by the refused rotations.
    raw(&dir)
        .execute(
            "UPDATE grants SET revoked_at = NULL, expires_at = ?1",
            [NOW + 365 * 86_400],
        )
        .unwrap();
    assert_eq!(store.get_refresh_token(&h(32), NOW).await.unwrap(), None);
    assert_eq!(store.get_refresh_token(&h(33), NOW).await.unwrap(), None);
}

#[tokio::test]
async fn refresh_rotation_then_reuse_revokes_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store
        .put_refresh_token(&refresh(h(30), "g1", NOW + 86_400))
        .await
        .unwrap();

    let new = refresh(h(31), "g1", NOW + 100 + 86_400);
    let RefreshRotation::Rotated(old, g) = store
        .rotate_refresh_token(&h(30), &new, NOW + 100)
        .await
        .unwrap()
    else {
        panic!("expected Rotated");
    };
    assert_eq!(old.hash, h(30));
    assert_eq!(old.used_at, Some(NOW + 100));
    assert_eq!(g.id, "g1");
    assert_eq!(
        store.get_refresh_token(&h(30), NOW + 101).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_refresh_token(&h(31), NOW + 101).await.unwrap(),
        Some(new)
    );

    // The old token comes back: reuse. The grant dies and with it the new token.
    let again = refresh(h(32), "g1", NOW + 200 + 86_400);
    let reused = store
        .rotate_refresh_token(&h(30), &again, NOW + 200)
        .await
        .unwrap();
    assert!(matches!(reused, RefreshRotation::Reused(ref t) if t.hash == h(30)));
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 200)
    );
    assert_eq!(
        store.get_refresh_token(&h(31), NOW + 201).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_refresh_token(&h(32), NOW + 201).await.unwrap(),
        None
    );
    assert_eq!(
        rotate(&store, h(31), refresh(h(33), "g1", NOW + 86_400), NOW + 202).await,
        RefreshRotation::Invalid
    );

    assert_eq!(
        rotate(&store, h(99), refresh(h(34), "g1", NOW), NOW).await,
        RefreshRotation::Invalid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_token_rotate_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_grant(&dir).await);
    store
        .put_refresh_token(&refresh(h(30), "g1", NOW + 86_400))
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let tasks: Vec<_> = [h(31), h(32)]
        .into_iter()
        .map(|new_hash| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .rotate_refresh_token(&h(30), &refresh(new_hash, "g1", NOW + 86_400), NOW + 1)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RefreshRotation::Rotated(..)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, RefreshRotation::Reused(..)))
        .count();
    assert_eq!((rotated, reused), (1, 1), "{outcomes:?}");
}

#[tokio::test]
async fn grants_keep_their_sid_and_rotated_refresh_tokens_can_still_be_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let g = store.get_grant("g1").await.unwrap().unwrap();
    assert_eq!(g.sid.as_deref(), Some("sid-of-the-session"));
    store
        .put_refresh_token(&refresh(h(40), "g1", NOW + 86_400))
        .await
        .unwrap();
    let rotated = rotate(&store, h(40), refresh(h(41), "g1", NOW + 86_400), NOW + 1).await;
    let RefreshRotation::Rotated(_, grant) = rotated else {
        panic!("{rotated:?}")
    };
    assert_eq!(grant.sid.as_deref(), Some("sid-of-the-session"));
    // The used token is no longer live, but it is still found, with its grant.
    assert!(store
        .get_refresh_token(&h(40), NOW + 2)
        .await
        .unwrap()
        .is_none());
    let found = store.find_refresh_token(&h(40)).await.unwrap().unwrap();
    assert_eq!(
        (found.grant_id.as_str(), found.used_at),
        ("g1", Some(NOW + 1))
    );
    assert!(store.find_refresh_token(&h(42)).await.unwrap().is_none());
}

// ---- Jitsi guest links ----

fn guest_link(id: &str, uses: i64) -> GuestLink {
    GuestLink {
        id: id.into(),
        room: "standup".into(),
        created_by: "u1".into(),
        uses,
        uses_left: uses,
        created_at: NOW,
        expires_at: NOW + 3600,
        revoked_at: None,
    }
}

#[tokio::test]
async fn guest_links_admit_their_uses_until_expired_or_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store.create_guest_link(&guest_link("l1", 2)).await.unwrap();
    store.create_guest_link(&guest_link("l2", 5)).await.unwrap();
    assert!(
        !store.use_guest_link("l1", "other", NOW).await.unwrap(),
        "another room"
    );
    assert!(store.use_guest_link("l1", "standup", NOW).await.unwrap());
    let live = store.list_guest_links("u1", "standup", NOW).await.unwrap();
    assert_eq!(live.len(), 2);
    assert!(live
        .iter()
        .any(|l| l.id == "l1" && l.uses_left == 1 && l.uses == 2));
    assert!(store.use_guest_link("l1", "standup", NOW).await.unwrap());
    assert!(
        !store.use_guest_link("l1", "standup", NOW).await.unwrap(),
        "used up"
    );
    assert!(
        !store
            .use_guest_link("l2", "standup", NOW + 3600)
            .await
            .unwrap(),
        "expired"
    );
    assert!(!store
        .revoke_guest_link("l2", "someone-else", NOW)
        .await
        .unwrap());
    assert!(store.revoke_guest_link("l2", "u1", NOW).await.unwrap());
    assert!(
        !store.use_guest_link("l2", "standup", NOW).await.unwrap(),
        "revoked"
    );
    assert!(store
        .list_guest_links("u1", "standup", NOW)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.sweep(NOW + 3600).await.unwrap().guest_links, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_of_a_last_use_admit_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_grant(&dir).await);
    store.create_guest_link(&guest_link("l1", 1)).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.use_guest_link("l1", "standup", NOW).await.unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 1);
}

// ---- signing keys ----

#[tokio::test]
async fn a_key_is_added_after_the_newest_only_if_that_is_still_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(store
        .add_signing_key_after(&key("k1", NOW, None), None)
        .await
        .unwrap());
    assert!(!store
        .add_signing_key_after(&key("k2", NOW, None), None)
        .await
        .unwrap());
    assert!(store
        .add_signing_key_after(&key("k2", NOW + 10, None), Some("k1"))
        .await
        .unwrap());
    // Another replica still believing k1 is the newest adds nothing.
    assert!(!store
        .add_signing_key_after(&key("k3", NOW + 10, None), Some("k1"))
        .await
        .unwrap());
    let kids: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k1", "k2"]);
}

#[tokio::test]
async fn signing_keys_list_in_activation_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .add_signing_key(&key("new", NOW + 100, None))
        .await
        .unwrap();
    store
        .add_signing_key(&key("old", NOW - 100, None))
        .await
        .unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(
        keys,
        [key("old", NOW - 100, None), key("new", NOW + 100, None)]
    );

    store
        .set_key_retire_at("old", Some(NOW + 50))
        .await
        .unwrap();
    assert_eq!(
        store.list_signing_keys().await.unwrap()[0].retire_at,
        Some(NOW + 50)
    );
    store.set_key_retire_at("old", None).await.unwrap();
    assert_eq!(store.list_signing_keys().await.unwrap()[0].retire_at, None);
    assert!(matches!(
        store.set_key_retire_at("nope", None).await,
        Err(StoreError::NotFound)
    ));
}

// ---- housekeeping ----

#[tokio::test]
async fn sweep_removes_what_has_expired_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await; // g1 with code h(1), expiring NOW + 60
    let later = NOW + 1000; // the code expired 940 s ago: past the replay grace
    let mut live_grant = grant("g2", "u1");
    live_grant.expires_at = later + 86_400;
    store
        .create_grant_with_code(&live_grant, &code(h(2), "g2"))
        .await
        .unwrap();
    // Expired grant still carrying a live access token: kept until that token expires.
    let mut expired_grant = grant("g3", "u1");
    expired_grant.expires_at = later - 1;
    store
        .create_grant_with_code(&expired_grant, &code(h(3), "g3"))
        .await
        .unwrap();
    store
        .put_access_token(&access(h(23), "g3", later + 10))
        .await
        .unwrap();
    // Expired grant without tokens: goes.
    let mut dead_grant = grant("g4", "u1");
    dead_grant.expires_at = later - 1;
    store
        .create_grant_with_code(&dead_grant, &code(h(4), "g4"))
        .await
        .unwrap();
    // Grant revoked two days ago: goes; revoked just now: stays for a while.
    store
        .create_grant_with_code(&grant("g5", "u1"), &code(h(5), "g5"))
        .await
        .unwrap();
    store.revoke_grant("g5", later - 2 * 86_400).await.unwrap();
    store
        .create_grant_with_code(&grant("g6", "u1"), &code(h(6), "g6"))
        .await
        .unwrap();
    store.revoke_grant("g6", later - 10).await.unwrap();

    store
        .create_session(&session(h(10), "u1", later))
        .await
        .unwrap();
    store
        .create_session(&session(h(11), "u1", later + 1))
        .await
        .unwrap();
    store.put_flow(&flow(h(40), later - 5)).await.unwrap();
    store.put_flow(&flow(h(41), later + 5)).await.unwrap();
    store
        .put_access_token(&access(h(20), "g1", later))
        .await
        .unwrap();
    store
        .put_access_token(&access(h(21), "g1", later + 1))
        .await
        .unwrap();
    store
        .put_refresh_token(&refresh(h(30), "g1", later - 1))
        .await
        .unwrap();
    store
        .put_refresh_token(&refresh(h(31), "g1", later + 1))
        .await
        .unwrap();
    store
        .add_signing_key(&key("retired", NOW - 100, Some(later - 1)))
        .await
        .unwrap();
    store
        .add_signing_key(&key("retiring", NOW, Some(later + 1)))
        .await
        .unwrap();
    store
        .add_signing_key(&key("current", NOW + 1, None))
        .await
        .unwrap();

    let swept = store.sweep(later).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            sessions: 1,
            flows: 1,
            // h(1) .. h(6) were all created expiring at NOW + 60: all past the grace.
            codes: 6,
            access_tokens: 1,
            refresh_tokens: 1,
            grants: 2,
            keys: 1,
            plex_pins: 0,
            guest_links: 0,
            lockouts: 0,
            links: 0,
            passkey_challenges: 0,
        }
    );
    assert!(store.get_session(&h(11), later).await.unwrap().is_some());
    assert!(store.get_flow(&h(41), later).await.unwrap().is_some());
    assert!(store
        .get_access_token(&h(21), later)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_access_token(&h(23), later)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_refresh_token(&h(31), later)
        .await
        .unwrap()
        .is_some());
    for (id, kept) in [
        ("g1", true),
        ("g2", true),
        ("g3", true),
        ("g4", false),
        ("g5", false),
    ] {
        assert_eq!(store.get_grant(id).await.unwrap().is_some(), kept, "{id}");
    }
    assert!(store.get_grant("g6").await.unwrap().is_some());
    let kids: Vec<String> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["retiring", "current"]);

    // Once its access token has expired, the expired grant g3 goes too (h(21) expires as well).
    let swept = store.sweep(later + 10).await.unwrap();
    assert_eq!((swept.access_tokens, swept.grants), (2, 1));
    assert_eq!(store.get_grant("g3").await.unwrap(), None);
    // And nothing left to do.
    assert_eq!(store.sweep(later + 10).await.unwrap(), Swept::default());
}

#[tokio::test]
async fn sweep_keeps_recently_expired_codes_for_replay_detection() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await; // code h(1) expires at NOW + 60
    store.redeem_code(&h(1), NOW + 1).await.unwrap();
    assert_eq!(store.sweep(NOW + 120).await.unwrap().codes, 0);
    let replay = store.redeem_code(&h(1), NOW + 121).await.unwrap();
    assert!(matches!(replay, CodeRedemption::Replayed(_)));
}

#[tokio::test]
async fn backup_writes_a_private_copy_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_user(&user("u1", "alice", Some("alice@example.com")))
        .await
        .unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();

    let copy = dir.path().join("backup.db");
    store.backup(&copy).await.unwrap();
    assert_eq!(mode(&copy), 0o600);
    // A single self-contained file: no journal or WAL left beside it.
    for suffix in ["-journal", "-wal", "-shm"] {
        assert!(
            !dir.path().join(format!("backup.db{suffix}")).exists(),
            "{suffix}"
        );
    }

    // An existing target is refused, and left alone.
    let err = store.backup(&copy).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        matches!(err, StoreError::BackupTarget(_)) && !err.to_string().contains("unavailable"),
        "{err}"
    );
    // A missing directory says so.
    let err = store
        .backup(&dir.path().join("no-such-dir").join("b.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    // The store keeps working after a backup.
    store.create_user(&user("u3", "carol", None)).await.unwrap();

    let restored = SqliteStore::open(&copy).unwrap();
    let names: Vec<String> = restored
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(
        restored
            .find_user_by_email("ALICE@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u1"
    );
}

#[tokio::test]
async fn identities_are_keyed_by_provider_id_and_follow_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    let id = Identity {
        provider: "plex".into(),
        subject: "12345".into(),
        user_id: "u1".into(),
        token: Some(vec![1, 2, 3]),
        server_token: None,
        owner: false,
        allowed: true,
        checked_at: Some(NOW),
        created_at: NOW,
        updated_at: NOW,
        by_invite: false,
    };
    store.put_identity(&id).await.unwrap();
    assert_eq!(
        store.get_identity("plex", "12345").await.unwrap(),
        Some(id.clone())
    );
    assert_eq!(
        store.user_identity("u1", "plex").await.unwrap(),
        Some(id.clone())
    );
    assert_eq!(store.get_identity("plex", "999").await.unwrap(), None);
    let updated = Identity {
        allowed: false,
        checked_at: Some(NOW + 60),
        ..id
    };
    store.put_identity(&updated).await.unwrap();
    assert_eq!(
        store.get_identity("plex", "12345").await.unwrap(),
        Some(updated.clone())
    );
    // Inserting only: a second link of the same external account is refused, the first kept.
    let other = Identity {
        by_invite: true,
        allowed: true,
        ..updated.clone()
    };
    assert!(!store.insert_identity(&other).await.unwrap());
    assert_eq!(
        store.get_identity("plex", "12345").await.unwrap(),
        Some(updated.clone())
    );
    let fresh = Identity {
        subject: "67890".into(),
        ..other
    };
    assert!(store.insert_identity(&fresh).await.unwrap());
    assert_eq!(
        store.get_identity("plex", "67890").await.unwrap(),
        Some(fresh)
    );
    store.delete_user("u1").await.unwrap();
    assert_eq!(
        store.get_identity("plex", "12345").await.unwrap(),
        None,
        "cascade"
    );
}

#[tokio::test]
async fn plex_polls_are_claimed_at_most_once_per_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let pin = PlexPin {
        flow_hash: h(1),
        browser_hash: h(2),
        pin_id: 3_000_000_000,
        code: "abcdefghijklmnopqrstuvwxy".into(),
        created_at: NOW,
        expires_at: NOW + 1800,
        next_poll_ms: 0,
    };
    store.put_plex_pin(&pin).await.unwrap();
    assert_eq!(store.get_plex_pin(&h(1)).await.unwrap(), Some(pin.clone()));
    let now_ms = NOW * 1000;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            s.claim_plex_poll(&h(1), now_ms, now_ms + 1000)
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        claimed += usize::from(t.await.unwrap());
    }
    assert_eq!(claimed, 1, "one poll per slot, however many ask");
    assert!(!store
        .claim_plex_poll(&h(1), now_ms + 999, now_ms + 1999)
        .await
        .unwrap());
    assert!(store
        .claim_plex_poll(&h(1), now_ms + 1000, now_ms + 2000)
        .await
        .unwrap());
    let swept = store.sweep(NOW + 1800).await.unwrap();
    assert_eq!(swept.plex_pins, 1);
    assert_eq!(store.get_plex_pin(&h(1)).await.unwrap(), None);
}

// ---- issue 10: flow steps, second factor, lockouts, acr ----

#[tokio::test]
async fn a_live_flow_payload_is_replaced_and_an_expired_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.put_flow(&flow(h(40), NOW + 600)).await.unwrap();
    assert!(store
        .update_flow_payload(&h(40), r#"{"kind":"code"}"#, NOW + 599)
        .await
        .unwrap());
    let f = store.get_flow(&h(40), NOW).await.unwrap().unwrap();
    assert_eq!(f.payload, r#"{"kind":"code"}"#);
    assert_eq!(f.expires_at, NOW + 600, "the step does not extend the flow");
    // Expired (even before the sweep removed it) or unknown: false, nothing written.
    assert!(!store
        .update_flow_payload(&h(40), r#"{"kind":"late"}"#, NOW + 600)
        .await
        .unwrap());
    let f = store.get_flow(&h(40), NOW).await.unwrap().unwrap();
    assert_eq!(f.payload, r#"{"kind":"code"}"#);
    assert!(!store.update_flow_payload(&h(41), "{}", NOW).await.unwrap());
    assert_eq!(store.get_flow(&h(41), NOW).await.unwrap(), None);
}

#[tokio::test]
async fn totp_steps_are_accepted_once_and_only_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    assert_eq!(store.get_totp("u1").await.unwrap(), None);
    assert!(!store.accept_totp_step("u1", 1).await.unwrap(), "no TOTP");

    store
        .enable_totp("u1", b"sealed-secret", &[h(1), h(2)], NOW)
        .await
        .unwrap();
    assert_eq!(
        store.get_totp("u1").await.unwrap(),
        Some(Totp {
            user_id: "u1".into(),
            secret: b"sealed-secret".to_vec(),
            enabled_at: NOW,
            last_step: None,
        })
    );
    assert!(store.accept_totp_step("u1", 100).await.unwrap());
    assert!(!store.accept_totp_step("u1", 100).await.unwrap(), "replay");
    assert!(
        !store.accept_totp_step("u1", 99).await.unwrap(),
        "older step"
    );
    assert!(store.accept_totp_step("u1", 101).await.unwrap());
    assert_eq!(
        store.get_totp("u1").await.unwrap().unwrap().last_step,
        Some(101)
    );
    assert_eq!(store.second_factor_users().await.unwrap(), vec!["u1"]);
}

#[tokio::test]
async fn enabling_again_replaces_the_secret_the_step_and_the_recovery_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store
        .enable_totp("u1", b"first", &[h(1), h(2), h(3)], NOW)
        .await
        .unwrap();
    assert!(store.accept_totp_step("u1", 500).await.unwrap());
    assert!(store.use_recovery_code("u1", &h(1), NOW).await.unwrap());
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 2);

    store
        .enable_totp("u1", b"second", &[h(7), h(8)], NOW + 10)
        .await
        .unwrap();
    let totp = store.get_totp("u1").await.unwrap().unwrap();
    assert_eq!(totp.secret, b"second".to_vec());
    assert_eq!(totp.enabled_at, NOW + 10);
    assert_eq!(totp.last_step, None, "a new secret starts without a step");
    // The old set is gone, used or not; the new one works.
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 2);
    assert!(!store.use_recovery_code("u1", &h(2), NOW).await.unwrap());
    assert!(store.use_recovery_code("u1", &h(7), NOW).await.unwrap());
    assert_eq!(store.second_factor_users().await.unwrap(), vec!["u1"]);
}

#[tokio::test]
async fn recovery_codes_work_once_each_and_only_for_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 0);
    store
        .replace_recovery_codes("u1", &[h(1), h(2), h(3)], NOW)
        .await
        .unwrap();
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 3);
    assert!(!store.use_recovery_code("u2", &h(1), NOW).await.unwrap());
    assert!(store.use_recovery_code("u1", &h(1), NOW).await.unwrap());
    assert!(!store.use_recovery_code("u1", &h(1), NOW + 1).await.unwrap());
    assert!(!store.use_recovery_code("u1", &h(9), NOW).await.unwrap());
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 2);

    // A new set: the old codes stop working.
    store
        .replace_recovery_codes("u1", &[h(4), h(5)], NOW + 5)
        .await
        .unwrap();
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 2);
    assert!(!store.use_recovery_code("u1", &h(2), NOW).await.unwrap());
    assert!(store.use_recovery_code("u1", &h(5), NOW).await.unwrap());
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 1);
    // Recovery codes alone are not a TOTP.
    assert!(store.passkey_counts().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_of_one_totp_step_or_recovery_code_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_grant(&dir).await);
    store
        .enable_totp("u1", b"sealed", &[h(1)], NOW)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    (store.accept_totp_step("u1", 42).await.unwrap(), false)
                } else {
                    (
                        false,
                        store.use_recovery_code("u1", &h(1), NOW).await.unwrap(),
                    )
                }
            })
        })
        .collect();
    let (mut steps, mut codes) = (0, 0);
    for task in tasks {
        let (step, code) = task.await.unwrap();
        steps += usize::from(step);
        codes += usize::from(code);
    }
    assert_eq!((steps, codes), (1, 1));
}

#[tokio::test]
async fn removing_the_second_factor_deletes_totp_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    assert!(!store.remove_second_factor("u1").await.unwrap());
    store
        .enable_totp("u1", b"sealed", &[h(1), h(2)], NOW)
        .await
        .unwrap();
    assert!(store.remove_second_factor("u1").await.unwrap());
    assert_eq!(store.get_totp("u1").await.unwrap(), None);
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 0);
    assert!(!store.use_recovery_code("u1", &h(1), NOW).await.unwrap());
    assert!(store.second_factor_users().await.unwrap().is_empty());
    assert!(!store.remove_second_factor("u1").await.unwrap());
    // Recovery codes without a TOTP count as something removed too.
    store
        .replace_recovery_codes("u1", &[h(3)], NOW)
        .await
        .unwrap();
    assert!(store.remove_second_factor("u1").await.unwrap());
}

fn lkey(account: &str, ip: &str) -> LockoutKey {
    LockoutKey {
        account: account.into(),
        ip: ip.into(),
    }
}

/// Adds one failure to every counter of `keys` (window from `now`) and returns f's answer.
async fn add_failure(store: &SqliteStore, keys: Vec<LockoutKey>, now: Timestamp) -> Option<i64> {
    store
        .update_lockouts(
            keys,
            now,
            Box::new(move |counters| {
                for c in counters.iter_mut() {
                    c.failures += 1;
                    c.window_start = now;
                }
                Some(7)
            }),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn lockout_counters_are_read_in_order_written_back_and_deleted_at_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let keys = vec![lkey("u1", "192.0.2.1"), lkey("u1", "")];

    // Missing rows are handed over as defaults, in the order of the keys.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let answer = store
        .update_lockouts(
            keys.clone(),
            NOW,
            Box::new(move |c| {
                log.lock().unwrap().extend_from_slice(c);
                c[0] = LockoutCounter {
                    failures: 2,
                    window_start: NOW,
                    blocked_until: 0,
                };
                c[1] = LockoutCounter {
                    failures: 5,
                    window_start: NOW - 1,
                    blocked_until: NOW + 30,
                };
                Some(NOW + 30)
            }),
        )
        .await
        .unwrap();
    assert_eq!(answer, Some(NOW + 30), "f's result is returned");
    assert_eq!(*seen.lock().unwrap(), vec![LockoutCounter::default(); 2]);
    assert_eq!(
        store.lockouts_of("u1").await.unwrap(),
        vec![
            (
                lkey("u1", ""),
                LockoutCounter {
                    failures: 5,
                    window_start: NOW - 1,
                    blocked_until: NOW + 30,
                }
            ),
            (
                lkey("u1", "192.0.2.1"),
                LockoutCounter {
                    failures: 2,
                    window_start: NOW,
                    blocked_until: 0,
                }
            ),
        ]
    );
    let updated: i64 = raw(&dir)
        .query_row("SELECT MAX(updated_at) FROM lockouts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(updated, NOW);

    // Stored counters are read back in key order (the reverse here); a counter set back to
    // the default is deleted.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let answer = store
        .update_lockouts(
            vec![lkey("u1", ""), lkey("u1", "192.0.2.1")],
            NOW + 1,
            Box::new(move |c| {
                log.lock().unwrap().extend_from_slice(c);
                c[1] = LockoutCounter::default();
                None
            }),
        )
        .await
        .unwrap();
    assert_eq!(answer, None);
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|c| c.failures)
            .collect::<Vec<_>>(),
        vec![5, 2]
    );
    assert_eq!(
        store
            .lockouts_of("u1")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec![lkey("u1", "")]
    );
    assert!(store.lockouts_of("u2").await.unwrap().is_empty());

    // Clearing an account removes all of its counters and only its.
    add_failure(
        &store,
        vec![lkey("u1", "198.51.100.9"), lkey("u2", "")],
        NOW,
    )
    .await;
    assert_eq!(store.clear_lockouts("u1").await.unwrap(), 2);
    assert_eq!(store.clear_lockouts("u1").await.unwrap(), 0);
    assert!(store.lockouts_of("u1").await.unwrap().is_empty());
    assert_eq!(store.lockouts_of("u2").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_lockout_updates_serialise() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let n = 40;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                add_failure(&store, vec![lkey("u1", "192.0.2.1"), lkey("u1", "")], NOW).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Some(7));
    }
    let counters = store.lockouts_of("u1").await.unwrap();
    assert_eq!(
        counters.iter().map(|(_, c)| c.failures).collect::<Vec<_>>(),
        vec![40, 40]
    );
}

#[tokio::test]
async fn sweep_removes_lockouts_idle_for_a_day_unless_still_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let later = NOW + 86_400 + 1;
    let set = |blocked_until: Timestamp| -> LockoutUpdate {
        Box::new(move |c| {
            c[0] = LockoutCounter {
                failures: 3,
                window_start: NOW,
                blocked_until,
            };
            None
        })
    };
    // Idle a day, block over: swept.
    store
        .update_lockouts(vec![lkey("idle", "")], NOW, set(NOW + 30))
        .await
        .unwrap();
    // Idle a day but still blocking at `later`: kept.
    store
        .update_lockouts(vec![lkey("blocked", "")], NOW, set(later + 1))
        .await
        .unwrap();
    // Touched within the day: kept.
    store
        .update_lockouts(vec![lkey("recent", "")], NOW + 10, set(NOW + 30))
        .await
        .unwrap();
    let swept = store.sweep(later).await.unwrap();
    assert_eq!(swept.lockouts, 1);
    assert!(store.lockouts_of("idle").await.unwrap().is_empty());
    assert_eq!(store.lockouts_of("blocked").await.unwrap().len(), 1);
    assert_eq!(store.lockouts_of("recent").await.unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_user_removes_their_second_factor_and_lockouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    store
        .enable_totp("u1", b"sealed", &[h(1), h(2)], NOW)
        .await
        .unwrap();
    store
        .enable_totp("u2", b"sealed", &[h(1)], NOW)
        .await
        .unwrap();
    add_failure(&store, vec![lkey("u1", "192.0.2.1"), lkey("u1", "")], NOW).await;
    add_failure(&store, vec![lkey("u2", "")], NOW).await;

    store.delete_user("u1").await.unwrap();
    let conn = raw(&dir);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM totp WHERE user_id = 'u1'"), 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM recovery_codes WHERE user_id = 'u1'"),
        0
    );
    assert!(store.lockouts_of("u1").await.unwrap().is_empty());
    // Bob keeps his.
    assert!(store.get_totp("u2").await.unwrap().is_some());
    assert_eq!(store.recovery_codes_left("u2").await.unwrap(), 1);
    assert_eq!(store.lockouts_of("u2").await.unwrap().len(), 1);
    assert_eq!(store.second_factor_users().await.unwrap(), vec!["u2"]);
    // A user that is not there: NotFound, and nothing else is touched.
    assert!(matches!(
        store.delete_user("u1").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn grants_keep_their_acr() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    assert_eq!(store.get_grant("g1").await.unwrap().unwrap().acr, None);
    let mut g = grant("g2", "u1");
    g.acr = Some("2fa".into());
    store
        .create_grant_with_code(&g, &code(h(2), "g2"))
        .await
        .unwrap();
    assert_eq!(store.get_grant("g2").await.unwrap(), Some(g.clone()));
    match store.redeem_code(&h(2), NOW).await.unwrap() {
        CodeRedemption::Fresh(_, grant) => assert_eq!(grant.acr.as_deref(), Some("2fa")),
        other => panic!("expected Fresh, got {other:?}"),
    }
    store
        .put_refresh_token(&refresh(h(30), "g2", NOW + 86_400))
        .await
        .unwrap();
    match rotate(&store, h(30), refresh(h(31), "g2", NOW + 86_400), NOW + 1).await {
        RefreshRotation::Rotated(_, grant) => assert_eq!(grant.acr.as_deref(), Some("2fa")),
        other => panic!("expected Rotated, got {other:?}"),
    }
}

#[tokio::test]
async fn a_users_live_sessions_are_listed_newest_first_with_where_they_began() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    let old = session(h(20), "u1", NOW + 100);
    let new = Session {
        created_at: NOW + 5,
        ip: None,
        user_agent: None,
        ..session(h(21), "u1", NOW + 100)
    };
    store.create_session(&old).await.unwrap();
    store.create_session(&new).await.unwrap();
    store
        .create_session(&session(h(22), "u1", NOW + 10))
        .await
        .unwrap();
    store
        .create_session(&session(h(23), "u2", NOW + 100))
        .await
        .unwrap();
    let listed = store.list_user_sessions("u1", NOW + 10).await.unwrap();
    assert_eq!(
        listed,
        vec![new, old.clone()],
        "expired and other users' left out"
    );
    assert_eq!(listed.get(1).unwrap().ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        listed.get(1).unwrap().user_agent.as_deref(),
        Some("Firefox")
    );
}

// ---- /account: the applications a user signed in to, their other sessions ----

#[tokio::test]
async fn a_users_grants_with_a_live_refresh_token_are_listed_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    let mut older = grant("g-old", "u1");
    older.created_at = NOW - 10;
    for (g, c) in [
        (older, 1),
        (grant("g-live", "u1"), 2),
        (grant("g-used", "u1"), 3),
        (grant("g-expired-token", "u1"), 4),
        (grant("g-revoked", "u1"), 5),
        (grant("g-none", "u1"), 6),
        (grant("g-bob", "u2"), 7),
    ] {
        store
            .create_grant_with_code(&g, &code(h(c), &g.id))
            .await
            .unwrap();
    }
    for (t, g, exp) in [
        (10, "g-old", NOW + 3600),
        (11, "g-live", NOW + 3600),
        (12, "g-expired-token", NOW),
        (13, "g-revoked", NOW + 3600),
    ] {
        store
            .put_refresh_token(&refresh(h(t), g, exp))
            .await
            .unwrap();
    }
    let mut bobs = refresh(h(14), "g-bob", NOW + 3600);
    bobs.user_id = "u2".into();
    store.put_refresh_token(&bobs).await.unwrap();
    // A rotated token no longer counts; its successor would.
    store
        .put_refresh_token(&refresh(h(15), "g-used", NOW + 3600))
        .await
        .unwrap();
    raw(&dir)
        .execute(
            "UPDATE refresh_tokens SET used_at = 1 WHERE grant_id = 'g-used'",
            [],
        )
        .unwrap();
    store.revoke_grant("g-revoked", NOW).await.unwrap();
    let ids: Vec<String> = store
        .list_user_grants("u1", NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, ["g-old", "g-live"]);
    assert!(
        store
            .list_user_grants("u1", NOW + 31 * 86_400)
            .await
            .unwrap()
            .is_empty(),
        "past the grants' absolute expiry"
    );
}

#[tokio::test]
async fn ending_a_users_other_sessions_keeps_the_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    for (n, u) in [(1, "u1"), (2, "u1"), (3, "u1"), (4, "u2")] {
        store
            .create_session(&session(h(n), u, NOW + 3600))
            .await
            .unwrap();
    }
    store
        .create_forward_auth_session(&h(20), &h(2), NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_user_sessions_except("u1", &h(1))
            .await
            .unwrap(),
        2
    );
    assert!(store.get_session(&h(1), NOW).await.unwrap().is_some());
    assert!(store.get_session(&h(2), NOW).await.unwrap().is_none());
    assert!(store.get_session(&h(3), NOW).await.unwrap().is_none());
    assert!(
        store.get_session(&h(4), NOW).await.unwrap().is_some(),
        "bob's"
    );
    assert!(
        store.forward_auth_parent(&h(20)).await.unwrap().is_none(),
        "its forward-auth session went with it"
    );
}

// ---- invite and reset links ----

fn link(id: &str, token: Hash, kind: LinkKind, uses: i64) -> Link {
    Link {
        id: id.into(),
        token_hash: token,
        kind,
        groups: vec!["family".into(), "media".into()],
        email: Some("carol@example.com".into()),
        email_verified: true,
        note: Some("for Carol".into()),
        user_id: None,
        uses,
        uses_left: uses,
        created_by: "cli".into(),
        created_at: NOW,
        expires_at: NOW + 3600,
        revoked_at: None,
    }
}

#[tokio::test]
async fn links_are_taken_by_token_and_kind_until_used_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_link(&link("inv1", h(1), LinkKind::Invite, 2))
        .await
        .unwrap();
    // The wrong kind or an unknown token takes nothing.
    assert!(store
        .take_link_use(&h(1), LinkKind::Reset, NOW)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .take_link_use(&h(2), LinkKind::Invite, NOW)
        .await
        .unwrap()
        .is_none());
    let first = store
        .take_link_use(&h(1), LinkKind::Invite, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.uses_left, 1);
    assert_eq!(first.groups, ["family", "media"]);
    assert_eq!(first.email.as_deref(), Some("carol@example.com"));
    assert!(first.email_verified);
    assert_eq!(first.note.as_deref(), Some("for Carol"));
    let second = store
        .take_link_use(&h(1), LinkKind::Invite, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.uses_left, 0);
    assert!(store
        .take_link_use(&h(1), LinkKind::Invite, NOW)
        .await
        .unwrap()
        .is_none());
    // A failed redemption gives its use back, but never beyond `uses`.
    store.give_back_link_use("inv1").await.unwrap();
    assert!(store
        .take_link_use(&h(1), LinkKind::Invite, NOW)
        .await
        .unwrap()
        .is_some());
    for _ in 0..5 {
        store.give_back_link_use("inv1").await.unwrap();
    }
    let found = store.find_link(&h(1), NOW).await.unwrap().unwrap();
    assert_eq!(found.uses_left, 2);
    // A used-up link is still found (its page says it was used), with no use left.
    for _ in 0..2 {
        store
            .take_link_use(&h(1), LinkKind::Invite, NOW)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .find_link(&h(1), NOW)
            .await
            .unwrap()
            .unwrap()
            .uses_left,
        0
    );
}

#[tokio::test]
async fn expired_and_revoked_links_are_not_taken_but_still_found_for_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_link(&link("old", h(1), LinkKind::Invite, 1))
        .await
        .unwrap();
    let mut reset = link("rst", h(2), LinkKind::Reset, 1);
    reset.user_id = Some("u1".into());
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_link(&reset).await.unwrap();
    let expiry = NOW + 3600;
    assert!(store
        .take_link_use(&h(1), LinkKind::Invite, expiry)
        .await
        .unwrap()
        .is_none());
    assert!(store.find_link(&h(1), expiry).await.unwrap().is_some());
    // Revoked: not taken, found with its revocation; revoking again or an unknown id: false.
    assert!(store.revoke_link("rst", NOW + 10).await.unwrap());
    assert!(!store.revoke_link("rst", NOW + 11).await.unwrap());
    assert!(!store.revoke_link("nope", NOW + 11).await.unwrap());
    assert!(store
        .take_link_use(&h(2), LinkKind::Reset, NOW + 20)
        .await
        .unwrap()
        .is_none());
    let found = store.find_link(&h(2), NOW + 20).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(NOW + 10));
    assert_eq!(found.user_id.as_deref(), Some("u1"));
    // Only the live ones are listed, per kind.
    store
        .create_link(&link("new", h(3), LinkKind::Invite, 1))
        .await
        .unwrap();
    let ids = |links: Vec<Link>| links.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_links(LinkKind::Invite, NOW).await.unwrap()),
        ["new", "old"]
    );
    assert!(store
        .list_links(LinkKind::Reset, NOW)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_links(LinkKind::Invite, expiry)
        .await
        .unwrap()
        .is_empty());
    // A week after expiry or revocation: unknown, and the sweep removes them.
    let later = NOW + 3600 + 7 * 86_400 + 1;
    assert!(store.find_link(&h(1), later).await.unwrap().is_none());
    assert!(store.find_link(&h(2), later).await.unwrap().is_none());
    let swept = store.sweep(later).await.unwrap();
    assert_eq!(swept.links, 3);
    assert!(store.find_link(&h(1), NOW).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_redemptions_of_the_last_use_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    for round in 0..10u8 {
        let token = h(100 + round);
        store
            .create_link(&link(&format!("l{round}"), token, LinkKind::Invite, 1))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .take_link_use(&token, LinkKind::Invite, NOW)
                        .await
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_reset_link_goes_with_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    let mut reset = link("rst", h(2), LinkKind::Reset, 1);
    reset.user_id = Some("u1".into());
    store.create_link(&reset).await.unwrap();
    store.delete_user("u1").await.unwrap();
    assert!(store.find_link(&h(2), NOW).await.unwrap().is_none());
}

#[tokio::test]
async fn setting_a_password_or_name_writes_only_those_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_user(&user("u1", "alice", Some("a@example.com")))
        .await
        .unwrap();
    // Disabled elsewhere (the CLI) after a handler read the row.
    let stale = store.get_user("u1").await.unwrap().unwrap();
    let mut disabled = stale.clone();
    disabled.disabled = true;
    disabled.groups = vec!["demoted".into()];
    store.update_user(&disabled).await.unwrap();
    store
        .set_user_password(&stale.id, "$argon2id$new", NOW + 1)
        .await
        .unwrap();
    store
        .set_user_name_and_email(
            &stale.id,
            Some("Alice"),
            Some("b@example.com"),
            false,
            NOW + 2,
        )
        .await
        .unwrap();
    let now = store.get_user("u1").await.unwrap().unwrap();
    assert!(now.disabled, "the disable stands");
    assert_eq!(now.groups, ["demoted"]);
    assert_eq!(now.password_hash.as_deref(), Some("$argon2id$new"));
    assert_eq!(now.name.as_deref(), Some("Alice"));
    assert_eq!(now.email.as_deref(), Some("b@example.com"));
    assert!(!now.email_verified);
    assert!(matches!(
        store.set_user_password("nobody", "x", NOW).await,
        Err(StoreError::NotFound)
    ));
    // Enabling writes only the flag: the groups and password just set stay.
    store.set_user_disabled("u1", false, NOW + 3).await.unwrap();
    let now = store.get_user("u1").await.unwrap().unwrap();
    assert!(!now.disabled);
    assert_eq!(now.groups, ["demoted"]);
    assert_eq!(now.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(matches!(
        store.set_user_disabled("nobody", true, NOW).await,
        Err(StoreError::NotFound)
    ));
}

// ---- /admin ----

#[tokio::test]
async fn a_retired_users_name_is_never_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "Bob", None)).await.unwrap();
    assert!(!store.username_retired("bob").await.unwrap());
    // A plain delete_user (tests, fixtures) keeps no tombstone.
    store.create_user(&user("u0", "dave", None)).await.unwrap();
    store.delete_user("u0").await.unwrap();
    assert!(!store.username_retired("dave").await.unwrap());
    store.create_user(&user("u0", "dave", None)).await.unwrap();
    store.retire_user("u1").await.unwrap();
    assert!(store.get_user("u1").await.unwrap().is_none(), "deleted");
    assert!(matches!(
        store.retire_user("u1").await,
        Err(StoreError::NotFound)
    ));
    for name in ["bob", "BOB", "Bob"] {
        assert!(store.username_retired(name).await.unwrap(), "{name}");
    }
    assert!(!store.username_retired("bobby").await.unwrap());
    // Refused like a taken name, whatever the case, and nothing was written.
    let again = store
        .create_user(&user("u2", "bOb", None))
        .await
        .unwrap_err();
    assert_eq!(conflict_field(again), "username");
    assert!(store.get_user("u2").await.unwrap().is_none());
    // Other names are fine; the tombstone survives reopening.
    store.create_user(&user("u3", "carol", None)).await.unwrap();
    drop(store);
    let store = open(&dir);
    assert!(store.username_retired("bob").await.unwrap());
}

#[tokio::test]
async fn name_and_groups_and_email_verified_write_only_those_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create_user(&user("u1", "alice", Some("a@example.com")))
        .await
        .unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    // Disabled elsewhere after the admin page read the row.
    let mut disabled = store.get_user("u1").await.unwrap().unwrap();
    disabled.disabled = true;
    store.update_user(&disabled).await.unwrap();
    store
        .set_user_name_and_groups("u1", Some("Alice L"), &["family".into()], NOW + 1)
        .await
        .unwrap();
    // Another address than the one vouched for: nothing.
    assert!(!store
        .mark_email_verified("u1", "b@example.com", NOW + 2)
        .await
        .unwrap());
    assert!(store
        .mark_email_verified("u1", "a@example.com", NOW + 2)
        .await
        .unwrap());
    let now = store.get_user("u1").await.unwrap().unwrap();
    assert!(now.disabled, "the disable stands");
    assert_eq!(now.name.as_deref(), Some("Alice L"));
    assert_eq!(now.groups, ["family"]);
    assert!(now.email_verified);
    assert_eq!(now.updated_at, NOW + 2);
    store
        .set_user_name_and_groups("u1", None, &[], NOW + 3)
        .await
        .unwrap();
    let now = store.get_user("u1").await.unwrap().unwrap();
    assert!(now.name.is_none() && now.groups.is_empty());
    // No email: nothing to verify.
    assert!(!store
        .mark_email_verified("u2", "a@example.com", NOW)
        .await
        .unwrap());
    assert!(matches!(
        store
            .set_user_name_and_groups("nobody", None, &[], NOW)
            .await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn list_sessions_has_every_users_live_sessions_newest_first_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    for (n, owner, start) in [(1, "u1", NOW), (2, "u2", NOW + 10), (3, "u1", NOW + 5)] {
        let mut s = session(h(n), owner, NOW + 100);
        s.created_at = start;
        store.create_session(&s).await.unwrap();
    }
    let mut old = session(h(4), "u2", NOW + 50);
    old.created_at = NOW + 20;
    store.create_session(&old).await.unwrap();
    let order = |list: Vec<Session>| -> Vec<u8> { list.iter().map(|s| s.id_hash[0]).collect() };
    assert_eq!(
        order(store.list_sessions(NOW + 1, 10).await.unwrap()),
        [4, 2, 3, 1]
    );
    assert_eq!(
        order(store.list_sessions(NOW + 50, 10).await.unwrap()),
        [2, 3, 1],
        "the expired one is gone"
    );
    assert_eq!(order(store.list_sessions(NOW, 2).await.unwrap()), [4, 2]);
    let first = store.list_sessions(NOW, 1).await.unwrap();
    assert_eq!(
        first.first().map(|s| s.ip.clone()),
        Some(Some("192.0.2.1".into()))
    );
}

// ---- passkeys ----

fn passkey(id: &str, user_id: &str, credential: u8) -> Passkey {
    Passkey {
        id: id.into(),
        credential_id: vec![credential; 16],
        user_id: user_id.into(),
        public_key: vec![0xa5, 1, 2],
        alg: -7,
        sign_count: 5,
        transports: vec!["usb".into(), "nfc".into()],
        name: "YubiKey".into(),
        aaguid: Some(vec![0; 16]),
        backup_eligible: false,
        backed_up: false,
        discoverable: true,
        created_at: NOW,
        last_used_at: None,
    }
}

#[tokio::test]
async fn passkeys_round_trip_and_a_credential_id_is_registered_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    let p = passkey("p1", "u1", 7);
    store.add_passkey(&p).await.unwrap();
    assert_eq!(store.list_passkeys("u1").await.unwrap(), vec![p.clone()]);
    assert_eq!(store.find_passkey(&[7; 16]).await.unwrap(), Some(p.clone()));
    assert!(store.list_passkeys("u2").await.unwrap().is_empty());
    // The same credential for another user (or again) is refused.
    let again = passkey("p2", "u2", 7);
    assert!(matches!(
        store.add_passkey(&again).await,
        Err(StoreError::Conflict {
            field: "credential"
        })
    ));
    assert_eq!(
        store.passkey_counts().await.unwrap(),
        vec![("u1".into(), 1)]
    );
    assert!(
        store.second_factor_users().await.unwrap().is_empty(),
        "TOTP only"
    );
}

#[tokio::test]
async fn a_passkey_counter_only_grows_and_zero_counters_stay_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.add_passkey(&passkey("p1", "u1", 1)).await.unwrap();
    assert!(store.use_passkey("p1", 6, true, NOW + 1).await.unwrap());
    assert!(
        !store.use_passkey("p1", 6, true, NOW + 2).await.unwrap(),
        "same count: a replay or clone"
    );
    assert!(
        !store.use_passkey("p1", 3, true, NOW + 3).await.unwrap(),
        "a lower count"
    );
    let seen = store.find_passkey(&[1; 16]).await.unwrap().unwrap();
    assert_eq!(
        (seen.sign_count, seen.backed_up, seen.last_used_at),
        (6, true, Some(NOW + 1))
    );
    // A synced passkey without a counter sends 0 every time.
    let mut synced = passkey("p2", "u1", 2);
    synced.sign_count = 0;
    store.add_passkey(&synced).await.unwrap();
    assert!(store.use_passkey("p2", 0, false, NOW).await.unwrap());
    assert!(store.use_passkey("p2", 0, false, NOW).await.unwrap());
    assert!(store.use_passkey("p2", 1, false, NOW).await.unwrap());
    assert!(
        !store.use_passkey("p2", 0, false, NOW).await.unwrap(),
        "back to 0 after counting"
    );
}

#[tokio::test]
async fn parallel_uses_of_one_assertion_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.add_passkey(&passkey("p1", "u1", 1)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.use_passkey("p1", 9, false, NOW).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn passkeys_are_renamed_and_removed_only_by_their_owner_and_codes_go_with_the_last_factor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store.create_user(&user("u2", "bob", None)).await.unwrap();
    store.add_passkey(&passkey("p1", "u1", 1)).await.unwrap();
    store.add_passkey(&passkey("p2", "u1", 2)).await.unwrap();
    store
        .replace_recovery_codes("u1", &[h(1), h(2)], NOW)
        .await
        .unwrap();
    assert!(!store.rename_passkey("u2", "p1", "mine now").await.unwrap());
    assert!(store.rename_passkey("u1", "p1", "Phone").await.unwrap());
    assert_eq!(
        store.find_passkey(&[1; 16]).await.unwrap().unwrap().name,
        "Phone"
    );
    assert!(!store.delete_passkey("u2", "p1").await.unwrap());
    assert!(store.delete_passkey("u1", "p1").await.unwrap());
    assert_eq!(
        store.recovery_codes_left("u1").await.unwrap(),
        2,
        "a passkey is left"
    );
    assert!(store.delete_passkey("u1", "p2").await.unwrap());
    assert_eq!(
        store.recovery_codes_left("u1").await.unwrap(),
        0,
        "no factor, no codes"
    );
    assert!(store.second_factor_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn removing_totp_keeps_the_codes_of_a_passkey_and_a_reset_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create_user(&user("u1", "alice", None)).await.unwrap();
    store
        .enable_totp("u1", b"sealed", &[h(1), h(2)], NOW)
        .await
        .unwrap();
    store.add_passkey(&passkey("p1", "u1", 1)).await.unwrap();
    assert!(store.remove_totp("u1").await.unwrap());
    assert!(store.get_totp("u1").await.unwrap().is_none());
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 2);
    assert!(store.remove_second_factor("u1").await.unwrap());
    assert!(store.list_passkeys("u1").await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left("u1").await.unwrap(), 0);
    // A deleted user takes their passkeys along.
    store.add_passkey(&passkey("p2", "u1", 2)).await.unwrap();
    store.delete_user("u1").await.unwrap();
    assert!(store.find_passkey(&[2; 16]).await.unwrap().is_none());
}

#[tokio::test]
async fn a_passkey_challenge_is_taken_once_by_its_binding_before_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let c = PasskeyChallenge {
        challenge_hash: h(1),
        binding_hash: h(2),
        ceremony: "{\"kind\":\"passwordless\"}".into(),
        expires_at: NOW + 300,
    };
    store.put_passkey_challenge(&c).await.unwrap();
    assert_eq!(
        store
            .take_passkey_challenge(&h(1), &h(3), NOW)
            .await
            .unwrap(),
        None,
        "another flow"
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .take_passkey_challenge(&h(1), &h(2), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut taken = Vec::new();
    for t in tasks {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(
        taken,
        vec![c.ceremony.clone()],
        "exactly one of a parallel burst"
    );
    // An expired challenge is gone, not taken.
    let old = PasskeyChallenge {
        challenge_hash: h(4),
        expires_at: NOW,
        ..c.clone()
    };
    store.put_passkey_challenge(&old).await.unwrap();
    assert_eq!(
        store
            .take_passkey_challenge(&h(4), &h(2), NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_passkey_challenge(&h(4), &h(2), NOW - 10)
            .await
            .unwrap(),
        None
    );
    let stale = PasskeyChallenge {
        challenge_hash: h(5),
        expires_at: NOW,
        ..c.clone()
    };
    store.put_passkey_challenge(&stale).await.unwrap();
    assert_eq!(store.sweep(NOW).await.unwrap().passkey_challenges, 1);
    // A flow asking again and again keeps only its newest few.
    for n in 10..20u8 {
        let again = PasskeyChallenge {
            challenge_hash: h(n),
            ..c.clone()
        };
        store.put_passkey_challenge(&again).await.unwrap();
    }
    let kept = PASSKEY_CHALLENGES_PER_BINDING as u8;
    for n in 10..20u8 {
        let live = store
            .take_passkey_challenge(&h(n), &h(2), NOW)
            .await
            .unwrap()
            .is_some();
        assert_eq!(live, n >= 20 - kept, "challenge {n}");
    }
}

#[tokio::test]
async fn session_clients_are_the_clients_of_unrevoked_grants() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_grant(&dir).await;
    let mut same = grant("g2", "u1");
    same.client_id = "other-app".into();
    let mut dup = grant("g3", "u1");
    dup.sid = Some("sid-of-the-session".into());
    let mut elsewhere = grant("g4", "u1");
    elsewhere.sid = Some("another-session".into());
    for (g, n) in [(&same, 2), (&dup, 3), (&elsewhere, 4)] {
        store
            .create_grant_with_code(g, &code(h(n), &g.id))
            .await
            .unwrap();
    }
    let of = |client: &str, sid: &str| SessionClient {
        client_id: client.into(),
        sid: Some(sid.into()),
    };
    assert_eq!(
        store
            .session_clients("u1", Some("sid-of-the-session"))
            .await
            .unwrap(),
        vec![
            of("app", "sid-of-the-session"),
            of("other-app", "sid-of-the-session")
        ]
    );
    assert_eq!(
        store.session_clients("u1", None).await.unwrap(),
        vec![
            of("app", "another-session"),
            of("app", "sid-of-the-session"),
            of("other-app", "sid-of-the-session")
        ]
    );
    // A revoked grant's client was told already (or has no session left to end).
    store.revoke_grant("g4", NOW + 1).await.unwrap();
    assert_eq!(store.session_clients("u1", None).await.unwrap().len(), 2);
    assert!(store
        .session_clients("nobody", None)
        .await
        .unwrap()
        .is_empty());
}
