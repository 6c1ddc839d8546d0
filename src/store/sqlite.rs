//! SQLite store (rusqlite).
//!
//! Why it is shaped this way:
//!
//! * rusqlite is synchronous, and a query can wait on the disk or on a lock for up to
//!   `busy_timeout`. Every call therefore runs inside `tokio::task::spawn_blocking`, so the
//!   async runtime's worker threads never block on SQLite.
//! * SQLite allows one writer at a time, and in WAL mode readers never block the writer nor
//!   each other. So the store keeps ONE writer connection (behind a `std::sync::Mutex`) for
//!   every write, and a few reader connections (each behind its own mutex, first free one
//!   wins) for plain reads. Serialising writes in-process means they queue on the mutex
//!   instead of spinning on SQLITE_BUSY.
//! * Multi-statement writes use `BEGIN IMMEDIATE`: the write lock is taken up front, so a
//!   transaction that reads then writes cannot fail half-way with SQLITE_BUSY_SNAPSHOT if
//!   another process (e.g. an admin command on the same file) wrote in between.
//! * Every statement goes through `prepare_cached`: each connection compiles a statement
//!   once and reuses it.
//! * The file holds private signing keys: it is created 0600 before SQLite opens it, and the
//!   WAL side files are kept 0600 too.
//! * Errors become meaning here: a UNIQUE violation on `users.username` / `users.email` is
//!   `Conflict`; anything else from SQLite is `Unavailable`. Nothing in here panics.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{ffi, params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::{
    AccessToken, AuthCode, CodeRedemption, Flow, Grant, GuestLink, Hash, Identity, LockoutCounter,
    LockoutKey, LockoutUpdate, Passkey, PasskeyChallenge, PlexPin, RefreshRotation, RefreshToken,
    Session, SigningKey, Store, StoreError, StoreResult, Swept, Timestamp, Totp, User,
};

/// Schema migrations, in order. Migration `i` (0-based) brings `PRAGMA user_version` from
/// `i` to `i + 1`. An applied migration is never edited; changes go in a new file.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_plex.sql"),
    include_str!("migrations/0003_forward_auth.sql"),
    include_str!("migrations/0004_fewer_write_indexes.sql"),
    include_str!("migrations/0005_sid_and_guest_links.sql"),
    include_str!("migrations/0006_second_factor.sql"),
    include_str!("migrations/0007_session_details.sql"),
    include_str!("migrations/0008_links.sql"),
    include_str!("migrations/0009_invited_identities.sql"),
    include_str!("migrations/0010_retired_usernames.sql"),
    include_str!("migrations/0011_passkeys.sql"),
    include_str!("migrations/0012_session_sid.sql"),
];

/// Reader connections. WAL lets them all read at once, alongside the writer.
const READERS: usize = 4;

/// How long a statement waits on a lock held by another connection before giving up with
/// SQLITE_BUSY (→ `Unavailable`).
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Prepared-statement cache per connection. rusqlite's default (16) is smaller than the number
/// of distinct statements the writer uses, which would evict and re-prepare them.
const STATEMENT_CACHE: usize = 64;

/// Codes stay this long after expiry before the sweep deletes them, so a replay shortly after
/// expiry is still recognised (and revokes the grant) rather than answered NotFound.
const CODE_GRACE: i64 = 600;

/// Revoked grants are kept this long (their tokens are already dead through the revocation).
const REVOKED_GRANT_GRACE: i64 = 86_400;

/// Lockout counters untouched this long (and not blocking) are swept.
const LOCKOUT_IDLE: i64 = 86_400;

/// Invite and reset links are kept this long after they expire or are revoked (their page
/// still says which), then swept; `find_link` reads them as unknown after it either way.
const LINK_GRACE: i64 = 7 * 86_400;

/// The SQLite store. Cheap to share: wrap it in an `Arc<dyn Store>`.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    /// Where the search for a free reader starts, so load spreads over all of them.
    next_reader: AtomicUsize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Creates the parent directory (0700) if missing and the file itself with mode 0600; an
    /// existing file (or WAL side file) with looser permissions is tightened to 0600. Blocking:
    /// call it at startup, or from `spawn_blocking`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| {
                        unavailable(format!("cannot create directory {}: {e}", parent.display()))
                    })?;
            }
        }
        // Create the file ourselves so it never exists with umask-derived permissions, even
        // for an instant. `mode` only applies on creation; an existing file is fixed below.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        restrict_permissions(path)?;
        // A -wal/-shm left by an earlier run keeps its mode; fix it before SQLite reuses it.
        restrict_side_files(path)?;

        let mut writer = open_connection(path)?;
        // WAL is persistent in the file, but setting it every time is cheap and repairs a file
        // that was switched back by some tool. It can fail (e.g. no shared memory on a network
        // filesystem): then refuse to start rather than run without concurrent readers.
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(map_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(format!(
                "cannot enable WAL mode (journal_mode is {mode})"
            )));
        }
        migrate(&mut writer)?;
        // SQLite creates the side files with the database file's mode; this is belt and braces
        // so a umask or an outside tool never leaves them world-readable.
        restrict_side_files(path)?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = open_connection(path)?;
            // Guard against a write slipping onto a reader: it would bypass the writer mutex.
            conn.pragma_update(None, "query_only", true)
                .map_err(map_err)?;
            readers.push(Mutex::new(conn));
        }

        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// The one user a single-parameter `sql` selects.
    async fn user_where(&self, sql: &'static str, value: &str) -> StoreResult<Option<User>> {
        let value = value.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(sql)?
                .query_row([value], user_from_row)
                .optional()
        })
        .await
    }

    /// Runs `f` on a reader connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = inner.reader()?;
            f(&conn).map_err(map_err)
        })
        .await
    }

    /// Runs `f` on the writer connection, off the async runtime.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = inner.writer.lock().map_err(|_| poisoned())?;
            f(&mut conn).map_err(map_err)
        })
        .await
    }
}

impl Inner {
    /// The first free reader, starting from a rotating position; if all are busy, waits for
    /// the one at that position.
    fn reader(&self) -> StoreResult<MutexGuard<'_, Connection>> {
        let count = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            let Some(slot) = start
                .wrapping_add(i)
                .checked_rem(count)
                .and_then(|n| self.readers.get(n))
            else {
                break;
            };
            match slot.try_lock() {
                Ok(guard) => return Ok(guard),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
            }
        }
        start
            .checked_rem(count)
            .and_then(|n| self.readers.get(n))
            .ok_or_else(|| unavailable("no reader connection".into()))?
            .lock()
            .map_err(|_| poisoned())
    }
}

/// Runs blocking work on tokio's blocking pool. A task that panicked or was cancelled is
/// reported as `Unavailable`, never propagated as a panic.
async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(format!("store task failed: {e}")))?
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

fn poisoned() -> StoreError {
    unavailable("store connection lock poisoned".into())
}

/// Turns a rusqlite error into the store's vocabulary: a UNIQUE violation on a user's
/// username or email is a `Conflict`; everything else is `Unavailable`.
fn map_err(err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &err {
        if failure.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE {
            // SQLite names the column: "UNIQUE constraint failed: users.email".
            if message.contains("users.username") {
                return StoreError::Conflict { field: "username" };
            }
            if message.contains("users.email") {
                return StoreError::Conflict { field: "email" };
            }
            if message.contains("passkeys.credential_id") {
                return StoreError::Conflict {
                    field: "credential",
                };
            }
        }
    }
    unavailable(err.to_string())
}

fn io_err(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    unavailable(format!("cannot {what} {}: {err}", path.display()))
}

/// Sets `path` to 0600 if group or others have any access.
fn restrict_permissions(path: &Path) -> StoreResult<()> {
    let meta = std::fs::metadata(path).map_err(|e| io_err("stat", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(|e| io_err("chmod", path, e))?;
    }
    Ok(())
}

/// Applies `restrict_permissions` to the -wal and -shm files of `db`, when they exist.
fn restrict_side_files(db: &Path) -> StoreResult<()> {
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let side = PathBuf::from(name);
        if side.exists() {
            restrict_permissions(&side)?;
        }
    }
    Ok(())
}

/// Opens one connection to an existing database file with the per-connection settings.
fn open_connection(path: &Path) -> StoreResult<Connection> {
    // No SQLITE_OPEN_CREATE: `open` created the file with the right mode; if it vanished, fail
    // rather than recreate it with default permissions. NO_MUTEX: each connection is only ever
    // used under its own Mutex.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| unavailable(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    // NORMAL is durable against application crashes in WAL mode, and only a power loss can
    // lose the last transactions; FULL would fsync on every commit.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(map_err)?;
    // Off by default in SQLite, per connection: the ON DELETE CASCADEs depend on it.
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(map_err)?;
    // Checkpoint every ~16 MiB of WAL instead of 4 MiB: pages written by many logins are copied
    // back once, not once each; the WAL is truncated to that size afterwards.
    conn.pragma_update(None, "wal_autocheckpoint", 4000)
        .map_err(map_err)?;
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
        .map_err(map_err)?;
    // Reads through a memory map instead of a pread per page: fewer system calls on every
    // lookup once another connection has written.
    conn.pragma_update(None, "mmap_size", 64 * 1024 * 1024)
        .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction together with the version bump.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let latest = MIGRATIONS.len();
    let current = user_version(conn).map_err(map_err)?;
    if !matches!(usize::try_from(current), Ok(v) if v <= latest) {
        return Err(unavailable(format!(
            "database schema version {current} is not one this doorman knows (latest {latest}); \
             was it written by a newer version?"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index + 1).map_err(|e| unavailable(e.to_string()))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        if user_version(&tx).map_err(map_err)? >= version {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| unavailable(format!("migration {version} failed: {e}")))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
    }
    Ok(())
}

// ---- row mapping ----
//
// Each `*_COLS` list is the column order its `*_from_row` reads by index; the macros let
// `concat!` build whole statements as string literals.

fn json_list(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn to_json(list: &[String]) -> rusqlite::Result<String> {
    serde_json::to_string(list).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Runs `sql`, an insert of one link whose first 14 parameters are the link's columns in
/// `link_cols!()` order, followed by `extra`; the rows written.
fn insert_link(
    conn: &Connection,
    sql: &str,
    l: &Link,
    extra: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<usize> {
    let (kind, groups) = (l.kind.as_str(), to_json(&l.groups)?);
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![
        &l.id,
        &l.token_hash,
        &kind,
        &groups,
        &l.email,
        &l.email_verified,
        &l.note,
        &l.user_id,
        &l.uses,
        &l.uses_left,
        &l.created_by,
        &l.created_at,
        &l.expires_at,
        &l.revoked_at,
    ];
    p.extend_from_slice(extra);
    conn.prepare_cached(sql)?.execute(p.as_slice())
}

macro_rules! user_cols {
    () => {
        "id, username, email, email_verified, name, given_name, family_name, picture, groups, \
         password_hash, disabled, created_at, updated_at, last_login_at"
    };
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        email: row.get(2)?,
        email_verified: row.get(3)?,
        name: row.get(4)?,
        given_name: row.get(5)?,
        family_name: row.get(6)?,
        picture: row.get(7)?,
        groups: json_list(row, 8)?,
        password_hash: row.get(9)?,
        disabled: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        last_login_at: row.get(13)?,
    })
}

macro_rules! passkey_cols {
    () => {
        "id, credential_id, user_id, public_key, alg, sign_count, transports, name, aaguid, \
         backup_eligible, backed_up, discoverable, created_at, last_used_at"
    };
}

macro_rules! identity_cols {
    () => {
        "provider, subject, user_id, token, server_token, owner, allowed, checked_at, created_at, \
         updated_at, by_invite"
    };
}

fn identity_from_row(row: &Row<'_>) -> rusqlite::Result<Identity> {
    Ok(Identity {
        provider: row.get(0)?,
        subject: row.get(1)?,
        user_id: row.get(2)?,
        token: row.get(3)?,
        server_token: row.get(4)?,
        owner: row.get(5)?,
        allowed: row.get(6)?,
        checked_at: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
        by_invite: row.get(10)?,
    })
}

impl SqliteStore {
    /// Writes an identity row with `verb` (`INSERT OR REPLACE` or `INSERT OR IGNORE`); whether a
    /// row was written.
    async fn write_identity(&self, identity: &Identity, verb: &'static str) -> StoreResult<bool> {
        let i = identity.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "{verb} INTO identities ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                identity_cols!()
            ))?
            .execute(params![
                i.provider,
                i.subject,
                i.user_id,
                i.token,
                i.server_token,
                i.owner,
                i.allowed,
                i.checked_at,
                i.created_at,
                i.updated_at,
                i.by_invite
            ])
            .map(|n| n == 1)
        })
        .await
    }
}

macro_rules! pin_cols {
    () => {
        "flow_hash, browser_hash, pin_id, code, created_at, expires_at, next_poll_ms"
    };
}

fn pin_from_row(row: &Row<'_>) -> rusqlite::Result<PlexPin> {
    Ok(PlexPin {
        flow_hash: row.get(0)?,
        browser_hash: row.get(1)?,
        pin_id: row.get(2)?,
        code: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        next_poll_ms: row.get(6)?,
    })
}

macro_rules! session_cols {
    () => {
        "id_hash, user_id, auth_time, amr, created_at, last_seen_at, expires_at, ip, user_agent, sid"
    };
}

// Hashes are read as `[u8; 32]`: a BLOB of another length is a conversion error
// (→ Unavailable), not a panic.
fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id_hash: row.get(0)?,
        user_id: row.get(1)?,
        auth_time: row.get(2)?,
        amr: json_list(row, 3)?,
        created_at: row.get(4)?,
        last_seen_at: row.get(5)?,
        expires_at: row.get(6)?,
        ip: row.get(7)?,
        user_agent: row.get(8)?,
        sid: row.get(9)?,
    })
}

macro_rules! flow_cols {
    () => {
        "id_hash, browser_hash, payload, created_at, expires_at"
    };
}

fn flow_from_row(row: &Row<'_>) -> rusqlite::Result<Flow> {
    Ok(Flow {
        id_hash: row.get(0)?,
        browser_hash: row.get(1)?,
        payload: row.get(2)?,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
    })
}

macro_rules! grant_cols {
    () => {
        "id, client_id, user_id, scope, auth_time, amr, nonce, created_at, expires_at, revoked_at, \
         sid, acr"
    };
}

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(0)?,
        client_id: row.get(1)?,
        user_id: row.get(2)?,
        scope: row.get(3)?,
        auth_time: row.get(4)?,
        amr: json_list(row, 5)?,
        nonce: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
        revoked_at: row.get(9)?,
        sid: row.get(10)?,
        acr: row.get(11)?,
    })
}

macro_rules! guest_link_cols {
    () => {
        "id, room, created_by, uses, uses_left, created_at, expires_at, revoked_at"
    };
}

fn guest_link_from_row(row: &Row<'_>) -> rusqlite::Result<GuestLink> {
    Ok(GuestLink {
        id: row.get(0)?,
        room: row.get(1)?,
        created_by: row.get(2)?,
        uses: row.get(3)?,
        uses_left: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

use super::{Link, LinkKind};

macro_rules! link_cols {
    () => {
        "id, token_hash, kind, groups, email, email_verified, note, user_id, uses, uses_left, \
         created_by, created_at, expires_at, revoked_at"
    };
}

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<Link> {
    let kind: String = row.get(2)?;
    let kind = LinkKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            Type::Text,
            format!("unknown link kind {kind:?}").into(),
        )
    })?;
    Ok(Link {
        id: row.get(0)?,
        token_hash: row.get(1)?,
        kind,
        groups: json_list(row, 3)?,
        email: row.get(4)?,
        email_verified: row.get(5)?,
        note: row.get(6)?,
        user_id: row.get(7)?,
        uses: row.get(8)?,
        uses_left: row.get(9)?,
        created_by: row.get(10)?,
        created_at: row.get(11)?,
        expires_at: row.get(12)?,
        revoked_at: row.get(13)?,
    })
}

macro_rules! code_cols {
    () => {
        "hash, grant_id, client_id, redirect_uri, code_challenge, created_at, expires_at, used_at"
    };
}

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<AuthCode> {
    Ok(AuthCode {
        hash: row.get(0)?,
        grant_id: row.get(1)?,
        client_id: row.get(2)?,
        redirect_uri: row.get(3)?,
        code_challenge: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        used_at: row.get(7)?,
    })
}

// Token columns are prefixed with `t.` because the lookups join them with their grant.
macro_rules! access_cols {
    () => {
        "t.hash, t.grant_id, t.client_id, t.user_id, t.scope, t.created_at, t.expires_at"
    };
}

fn access_from_row(row: &Row<'_>) -> rusqlite::Result<AccessToken> {
    Ok(AccessToken {
        hash: row.get(0)?,
        grant_id: row.get(1)?,
        client_id: row.get(2)?,
        user_id: row.get(3)?,
        scope: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}

macro_rules! refresh_cols {
    () => {
        "t.hash, t.grant_id, t.client_id, t.user_id, t.scope, t.created_at, t.expires_at, \
         t.used_at"
    };
}

fn refresh_from_row(row: &Row<'_>) -> rusqlite::Result<RefreshToken> {
    Ok(RefreshToken {
        hash: row.get(0)?,
        grant_id: row.get(1)?,
        client_id: row.get(2)?,
        user_id: row.get(3)?,
        scope: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        used_at: row.get(7)?,
    })
}

macro_rules! key_cols {
    () => {
        "kid, alg, private_pem, created_at, active_from, retire_at"
    };
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<SigningKey> {
    Ok(SigningKey {
        kid: row.get(0)?,
        alg: row.get(1)?,
        private_pem: row.get(2)?,
        created_at: row.get(3)?,
        active_from: row.get(4)?,
        retire_at: row.get(5)?,
    })
}

/// `Ok(())` if a statement touched a row, `NotFound` otherwise (for updates of one named row).
fn one_row(changed: usize) -> StoreResult<()> {
    if changed == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn grant_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Grant>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        grant_cols!(),
        " FROM grants WHERE id = ?1"
    ))?
    .query_row([id], grant_from_row)
    .optional()
}

fn revoke_grant_on(conn: &Connection, id: &str, now: Timestamp) -> rusqlite::Result<usize> {
    // Keeps the first revocation time when revoked again.
    conn.prepare_cached("UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, now])
}

fn insert_refresh(conn: &Connection, t: &RefreshToken) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens \
         (hash, grant_id, client_id, user_id, scope, created_at, expires_at, used_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        t.hash,
        t.grant_id,
        t.client_id,
        t.user_id,
        t.scope,
        t.created_at,
        t.expires_at,
        t.used_at
    ])
}

/// The refresh token `hash` with its grant, whatever their state.
fn refresh_with_grant(
    conn: &Connection,
    hash: &Hash,
) -> rusqlite::Result<Option<(RefreshToken, Grant)>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        refresh_cols!(),
        ", g.id, g.client_id, g.user_id, g.scope, g.auth_time, g.amr, g.nonce, g.created_at, \
         g.expires_at, g.revoked_at, g.sid, g.acr \
         FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id WHERE t.hash = ?1"
    ))?
    .query_row([hash], |row| {
        let token = refresh_from_row(row)?;
        // The grant's columns follow the token's 8.
        let grant = Grant {
            id: row.get(8)?,
            client_id: row.get(9)?,
            user_id: row.get(10)?,
            scope: row.get(11)?,
            auth_time: row.get(12)?,
            amr: json_list(row, 13)?,
            nonce: row.get(14)?,
            created_at: row.get(15)?,
            expires_at: row.get(16)?,
            revoked_at: row.get(17)?,
            sid: row.get(18)?,
            acr: row.get(19)?,
        };
        Ok((token, grant))
    })
    .optional()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        // A real write through the writer: a full disk, a lock held by another process or a
        // broken file is what makes the service unusable, and a read would not notice them.
        // The wait for the lock is kept short so a health check answers within its timeout.
        self.write(|conn| {
            conn.busy_timeout(std::time::Duration::from_millis(1500))?;
            let result = conn
                .prepare_cached(
                    "INSERT INTO settings (key, value) VALUES ('health_check', 'ok') \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut stmt| stmt.execute([]));
            conn.busy_timeout(std::time::Duration::from_millis(5000))?;
            result
        })
        .await
        .map(|_| ())
    }

    // ---- settings ----

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)")?
                .execute([&key, &value])?;
            let stored: String = tx
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([&key], |row| row.get(0))?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    // ---- users ----

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        // A retired username (a deleted account's) is refused like a taken one, in the same
        // statement: nothing is inserted, and the caller hears "username taken".
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO users (",
                user_cols!(),
                ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
                 WHERE NOT EXISTS (SELECT 1 FROM retired_usernames WHERE username = lower(?2))"
            ))?
            .execute(params![
                u.id,
                u.username,
                u.email,
                u.email_verified,
                u.name,
                u.given_name,
                u.family_name,
                u.picture,
                to_json(&u.groups)?,
                u.password_hash,
                u.disabled,
                u.created_at,
                u.updated_at,
                u.last_login_at
            ])
        })
        .await
        .and_then(|inserted| {
            if inserted == 0 {
                Err(StoreError::Conflict { field: "username" })
            } else {
                Ok(())
            }
        })
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        self.user_where(
            concat!("SELECT ", user_cols!(), " FROM users WHERE id = ?1"),
            id,
        )
        .await
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        // The column's NOCASE collation applies to the comparison (and uses its index).
        let sql = concat!("SELECT ", user_cols!(), " FROM users WHERE username = ?1");
        self.user_where(sql, username).await
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let sql = concat!("SELECT ", user_cols!(), " FROM users WHERE email = ?1");
        self.user_where(sql, email).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users ORDER BY username"
            ))?
            .query_map([], user_from_row)?
            .collect()
        })
        .await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET email = ?2, email_verified = ?3, name = ?4, given_name = ?5, \
                 family_name = ?6, picture = ?7, groups = ?8, password_hash = ?9, disabled = ?10, \
                 updated_at = ?11, last_login_at = ?12 \
                 WHERE id = ?1",
            )?
            .execute(params![
                u.id,
                u.email,
                u.email_verified,
                u.name,
                u.given_name,
                u.family_name,
                u.picture,
                to_json(&u.groups)?,
                u.password_hash,
                u.disabled,
                u.updated_at,
                u.last_login_at
            ])
        })
        .await
        .and_then(one_row)
    }

    async fn set_user_password(&self, id: &str, hash: &str, now: Timestamp) -> StoreResult<()> {
        let (id, hash) = (id.to_owned(), hash.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, hash, now])
        })
        .await
        .and_then(one_row)
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool, now: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![id, disabled, now])
        })
        .await
        .and_then(one_row)
    }

    async fn set_user_name_and_email(
        &self,
        id: &str,
        name: Option<&str>,
        email: Option<&str>,
        email_verified: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (id, name, email) = (
            id.to_owned(),
            name.map(str::to_owned),
            email.map(str::to_owned),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET name = ?2, email = ?3, email_verified = ?4, updated_at = ?5 \
                 WHERE id = ?1",
            )?
            .execute(params![id, name, email, email_verified, now])
        })
        .await
        .and_then(one_row)
    }

    async fn record_login(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")?
                .execute(params![user_id, now])
        })
        .await
        .and_then(one_row)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        // ON DELETE CASCADE removes sessions, grants (and through them every code and token),
        // the TOTP and the recovery codes. Lockout counters have no foreign key (unknown
        // usernames are counted too): the user's go here, in the same transaction.
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx
                .prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute([&id])?;
            if deleted > 0 {
                tx.prepare_cached("DELETE FROM lockouts WHERE account = ?1")?
                    .execute([&id])?;
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
        .and_then(one_row)
    }

    // ---- SSO sessions ----

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let s = session.clone();
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO sessions (",
                session_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                s.id_hash,
                s.user_id,
                s.auth_time,
                to_json(&s.amr)?,
                s.created_at,
                s.last_seen_at,
                s.expires_at,
                s.ip,
                s.user_agent,
                s.sid
            ])
            .map(|_| ())
        })
        .await
    }

    async fn get_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Session>> {
        let id_hash = *id_hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions WHERE id_hash = ?1 AND ?2 < expires_at"
            ))?
            .query_row(params![id_hash, now], session_from_row)
            .optional()
        })
        .await
    }

    async fn list_user_sessions(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Session>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions WHERE user_id = ?1 AND ?2 < expires_at ORDER BY created_at DESC"
            ))?
            .query_map(params![user_id, now], session_from_row)?
            .collect()
        })
        .await
    }

    async fn touch_session(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<()> {
        let id_hash = *id_hash;
        // A session that vanished meanwhile (logout, sweep) is not an error: nothing to touch.
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1")?
                .execute(params![id_hash, now])
                .map(|_| ())
        })
        .await
    }

    async fn delete_session(&self, id_hash: &Hash) -> StoreResult<()> {
        let id_hash = *id_hash;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")?
                .execute([id_hash])
                .map(|_| ())
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                .execute([user_id])
                .map(|n| n as u64)
        })
        .await
    }

    // ---- pending flows ----

    async fn put_flow(&self, flow: &Flow) -> StoreResult<()> {
        let f = flow.clone();
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO flows (",
                flow_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                f.id_hash,
                f.browser_hash,
                f.payload,
                f.created_at,
                f.expires_at
            ])
            .map(|_| ())
        })
        .await
    }

    async fn get_flow(&self, id_hash: &Hash, now: Timestamp) -> StoreResult<Option<Flow>> {
        let id_hash = *id_hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                flow_cols!(),
                " FROM flows WHERE id_hash = ?1 AND ?2 < expires_at"
            ))?
            .query_row(params![id_hash, now], flow_from_row)
            .optional()
        })
        .await
    }

    async fn delete_flow(&self, id_hash: &Hash) -> StoreResult<()> {
        let id_hash = *id_hash;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM flows WHERE id_hash = ?1")?
                .execute([id_hash])
                .map(|_| ())
        })
        .await
    }

    async fn update_flow_payload(
        &self,
        id_hash: &Hash,
        payload: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (id_hash, payload) = (*id_hash, payload.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE flows SET payload = ?2 WHERE id_hash = ?1 AND ?3 < expires_at",
            )?
            .execute(params![id_hash, payload, now])
            .map(|n| n == 1)
        })
        .await
    }

    // ---- second factor ----

    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<Totp>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT user_id, secret, enabled_at, last_step FROM totp WHERE user_id = ?1",
            )?
            .query_row([user_id], |row| {
                Ok(Totp {
                    user_id: row.get(0)?,
                    secret: row.get(1)?,
                    enabled_at: row.get(2)?,
                    last_step: row.get(3)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn enable_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        recovery: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (user_id, secret, recovery) = (user_id.to_owned(), secret.to_vec(), recovery.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO totp (user_id, secret, enabled_at, last_step) \
                 VALUES (?1, ?2, ?3, NULL) \
                 ON CONFLICT (user_id) DO UPDATE SET \
                 secret = excluded.secret, enabled_at = excluded.enabled_at, last_step = NULL",
            )?
            .execute(params![user_id, secret, now])?;
            replace_codes_on(&tx, &user_id, &recovery, now)?;
            tx.commit()
        })
        .await
    }

    async fn accept_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        // One statement checks and records: of two racing uses of a code only one sees the
        // step still newer than the last.
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE totp SET last_step = ?2 \
                 WHERE user_id = ?1 AND (last_step IS NULL OR last_step < ?2)",
            )?
            .execute(params![user_id, step])
            .map(|n| n == 1)
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        codes: &[Hash],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (user_id, codes) = (user_id.to_owned(), codes.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            replace_codes_on(&tx, &user_id, &codes, now)?;
            tx.commit()
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &Hash,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (user_id, code) = (user_id.to_owned(), *code);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE recovery_codes SET used_at = ?3 \
                 WHERE user_id = ?1 AND hash = ?2 AND used_at IS NULL",
            )?
            .execute(params![user_id, code, now])
            .map(|n| n == 1)
        })
        .await
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<u32> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
            )?
            .query_row([user_id], |row| row.get(0))
        })
        .await
    }

    async fn remove_second_factor(&self, user_id: &str) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let totp = tx
                .prepare_cached("DELETE FROM totp WHERE user_id = ?1")?
                .execute([&user_id])?;
            let codes = tx
                .prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?
                .execute([&user_id])?;
            let passkeys = tx
                .prepare_cached("DELETE FROM passkeys WHERE user_id = ?1")?
                .execute([&user_id])?;
            tx.commit()?;
            Ok(totp > 0 || codes > 0 || passkeys > 0)
        })
        .await
    }

    async fn second_factor_users(&self) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT user_id FROM totp ORDER BY user_id")?
                .query_map([], |row| row.get(0))?
                .collect()
        })
        .await
    }

    // ---- sign-in lockouts ----

    async fn update_lockouts(
        &self,
        keys: Vec<LockoutKey>,
        now: Timestamp,
        f: LockoutUpdate,
    ) -> StoreResult<Option<Timestamp>> {
        self.write(move |conn| {
            // IMMEDIATE: the counters are read under the write lock, so two attempts (in this
            // process or another replica's) cannot both read the same count.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counters = Vec::with_capacity(keys.len());
            for key in &keys {
                let counter = tx
                    .prepare_cached(
                        "SELECT failures, window_start, blocked_until FROM lockouts \
                         WHERE account = ?1 AND ip = ?2",
                    )?
                    .query_row(params![key.account, key.ip], |row| {
                        Ok(LockoutCounter {
                            failures: row.get(0)?,
                            window_start: row.get(1)?,
                            blocked_until: row.get(2)?,
                        })
                    })
                    .optional()?
                    .unwrap_or_default();
                counters.push(counter);
            }
            let result = f(&mut counters);
            for (key, counter) in keys.iter().zip(&counters) {
                if *counter == LockoutCounter::default() {
                    tx.prepare_cached("DELETE FROM lockouts WHERE account = ?1 AND ip = ?2")?
                        .execute(params![key.account, key.ip])?;
                } else {
                    tx.prepare_cached(
                        "INSERT INTO lockouts \
                         (account, ip, failures, window_start, blocked_until, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (account, ip) DO UPDATE SET \
                         failures = excluded.failures, window_start = excluded.window_start, \
                         blocked_until = excluded.blocked_until, updated_at = excluded.updated_at",
                    )?
                    .execute(params![
                        key.account,
                        key.ip,
                        counter.failures,
                        counter.window_start,
                        counter.blocked_until,
                        now
                    ])?;
                }
            }
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    async fn clear_lockouts(&self, account: &str) -> StoreResult<u64> {
        let account = account.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM lockouts WHERE account = ?1")?
                .execute([account])
                .map(|n| n as u64)
        })
        .await
    }

    async fn lockouts_of(&self, account: &str) -> StoreResult<Vec<(LockoutKey, LockoutCounter)>> {
        let account = account.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT account, ip, failures, window_start, blocked_until FROM lockouts \
                 WHERE account = ?1 ORDER BY ip",
            )?
            .query_map([account], |row| {
                Ok((
                    LockoutKey {
                        account: row.get(0)?,
                        ip: row.get(1)?,
                    },
                    LockoutCounter {
                        failures: row.get(2)?,
                        window_start: row.get(3)?,
                        blocked_until: row.get(4)?,
                    },
                ))
            })?
            .collect()
        })
        .await
    }

    // ---- grants, codes, tokens ----

    async fn create_grant_with_code(&self, grant: &Grant, code: &AuthCode) -> StoreResult<()> {
        let (g, c) = (grant.clone(), code.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(concat!(
                "INSERT INTO grants (",
                grant_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                g.id,
                g.client_id,
                g.user_id,
                g.scope,
                g.auth_time,
                to_json(&g.amr)?,
                g.nonce,
                g.created_at,
                g.expires_at,
                g.revoked_at,
                g.sid,
                g.acr
            ])?;
            tx.prepare_cached(concat!(
                "INSERT INTO auth_codes (",
                code_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                c.hash,
                c.grant_id,
                c.client_id,
                c.redirect_uri,
                c.code_challenge,
                c.created_at,
                c.expires_at,
                c.used_at
            ])?;
            tx.commit()
        })
        .await
    }

    async fn redeem_code(&self, hash: &Hash, now: Timestamp) -> StoreResult<CodeRedemption> {
        let hash = *hash;
        self.write(move |conn| redeem_on(conn, &hash, now, None))
            .await
    }

    async fn redeem_code_issuing(
        &self,
        hash: &Hash,
        now: Timestamp,
        access_hash: &Hash,
        access_expires_at: Timestamp,
    ) -> StoreResult<CodeRedemption> {
        let (hash, access_hash) = (*hash, *access_hash);
        self.write(move |conn| redeem_on(conn, &hash, now, Some((access_hash, access_expires_at))))
            .await
    }

    async fn get_grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let id = id.to_owned();
        self.read(move |conn| grant_by_id(conn, &id)).await
    }

    async fn revoke_grant(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            if revoke_grant_on(conn, &id, now)? > 0 {
                return Ok(true);
            }
            // Revoking an already revoked grant is fine; only an unknown one is NotFound.
            Ok(conn
                .prepare_cached("SELECT 1 FROM grants WHERE id = ?1")?
                .query_row([&id], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
        .and_then(|exists| {
            if exists {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        })
    }

    async fn revoke_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<u64> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE grants SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![user_id, now])
            .map(|n| n as u64)
        })
        .await
    }

    async fn revoke_session_grants(
        &self,
        user_id: &str,
        sid: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let (user_id, sid) = (user_id.to_owned(), sid.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE grants SET revoked_at = ?2 WHERE user_id = ?1 AND sid = ?3 AND revoked_at IS NULL RETURNING id",
            )?
            .query_map(params![user_id, now, sid], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn put_access_token(&self, token: &AccessToken) -> StoreResult<()> {
        let t = token.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO access_tokens \
                 (hash, grant_id, client_id, user_id, scope, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                t.hash,
                t.grant_id,
                t.client_id,
                t.user_id,
                t.scope,
                t.created_at,
                t.expires_at
            ])
            .map(|_| ())
        })
        .await
    }

    async fn get_access_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<AccessToken>> {
        let hash = *hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                access_cols!(),
                " FROM access_tokens t JOIN grants g ON g.id = t.grant_id \
                 WHERE t.hash = ?1 AND ?2 < t.expires_at AND g.revoked_at IS NULL"
            ))?
            .query_row(params![hash, now], access_from_row)
            .optional()
        })
        .await
    }

    async fn delete_access_token(&self, hash: &Hash) -> StoreResult<()> {
        let hash = *hash;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM access_tokens WHERE hash = ?1")?
                .execute([hash])
                .map(|_| ())
        })
        .await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        self.write(move |conn| insert_refresh(conn, &t).map(|_| ()))
            .await
    }

    async fn get_refresh_token(
        &self,
        hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<RefreshToken>> {
        let hash = *hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                refresh_cols!(),
                " FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
                 WHERE t.hash = ?1 AND ?2 < t.expires_at AND t.used_at IS NULL \
                 AND g.revoked_at IS NULL AND ?2 < g.expires_at"
            ))?
            .query_row(params![hash, now], refresh_from_row)
            .optional()
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &Hash,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<RefreshRotation> {
        let (old_hash, new) = (*old_hash, new.clone());
        self.write(move |conn| {
            // IMMEDIATE: the check and the update happen under one write lock, so of two
            // rotations of the same token exactly one sees it unused.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((mut old, grant)) = refresh_with_grant(&tx, &old_hash)? else {
                return Ok(RefreshRotation::Invalid);
            };
            if old.used_at.is_some() {
                // Reuse of a rotated token: assume it was stolen and kill the whole family
                // (RFC 9700 §4.14.2). Checked before expiry so late reuse still revokes.
                revoke_grant_on(&tx, &grant.id, now)?;
                tx.commit()?;
                return Ok(RefreshRotation::Reused(old));
            }
            if now >= old.expires_at || grant.revoked_at.is_some() || now >= grant.expires_at {
                return Ok(RefreshRotation::Invalid);
            }
            tx.prepare_cached("UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1")?
                .execute(params![old_hash, now])?;
            insert_refresh(&tx, &new)?;
            tx.commit()?;
            old.used_at = Some(now);
            Ok(RefreshRotation::Rotated(old, grant))
        })
        .await
    }

    async fn find_refresh_token(&self, hash: &Hash) -> StoreResult<Option<RefreshToken>> {
        let hash = *hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                refresh_cols!(),
                " FROM refresh_tokens t WHERE t.hash = ?1"
            ))?
            .query_row([hash], refresh_from_row)
            .optional()
        })
        .await
    }

    // ---- signing keys ----

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                key_cols!(),
                " FROM signing_keys ORDER BY active_from, kid"
            ))?
            .query_map([], key_from_row)?
            .collect()
        })
        .await
    }

    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        let k = key.clone();
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO signing_keys (",
                key_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                k.kid,
                k.alg,
                k.private_pem,
                k.created_at,
                k.active_from,
                k.retire_at
            ])
            .map(|_| ())
        })
        .await
    }

    async fn add_signing_key_after(
        &self,
        key: &SigningKey,
        newest: Option<&str>,
    ) -> StoreResult<bool> {
        let (k, newest) = (key.clone(), newest.map(str::to_owned));
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<String> = tx
                .prepare_cached(
                    "SELECT kid FROM signing_keys WHERE retire_at IS NULL \
                     ORDER BY active_from DESC, kid DESC LIMIT 1",
                )?
                .query_row([], |row| row.get(0))
                .optional()?;
            if current != newest {
                return Ok(false);
            }
            tx.prepare_cached(concat!(
                "INSERT INTO signing_keys (",
                key_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                k.kid,
                k.alg,
                k.private_pem,
                k.created_at,
                k.active_from,
                k.retire_at
            ])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn set_key_retire_at(&self, kid: &str, retire_at: Option<Timestamp>) -> StoreResult<()> {
        let kid = kid.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE signing_keys SET retire_at = ?2 WHERE kid = ?1")?
                .execute(params![kid, retire_at])
        })
        .await
        .and_then(one_row)
    }

    // ---- housekeeping ----

    async fn sweep(&self, now: Timestamp) -> StoreResult<Swept> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let delete = |sql: &str, cutoff: Timestamp| -> rusqlite::Result<u64> {
                tx.prepare_cached(sql)?.execute([cutoff]).map(|n| n as u64)
            };
            // Tokens first, so their counts include the ones the grant deletion below would
            // otherwise remove silently by cascade.
            let sessions = delete("DELETE FROM sessions WHERE expires_at <= ?1", now)?;
            let flows = delete("DELETE FROM flows WHERE expires_at <= ?1", now)?;
            let codes = delete(
                "DELETE FROM auth_codes WHERE expires_at < ?1",
                now.saturating_sub(CODE_GRACE),
            )?;
            let access_tokens = delete("DELETE FROM access_tokens WHERE expires_at <= ?1", now)?;
            let refresh_tokens = delete("DELETE FROM refresh_tokens WHERE expires_at <= ?1", now)?;
            // A grant past its absolute expiry can still carry an access token issued shortly
            // before it (access-token lifetime is independent); keep the grant until that one
            // expires. Revoked grants have no live tokens; they are kept a day for inspection.
            let grants = tx
                .prepare_cached(
                    "DELETE FROM grants WHERE \
                     (revoked_at IS NOT NULL AND revoked_at < ?2) \
                     OR (expires_at <= ?1 AND NOT EXISTS \
                         (SELECT 1 FROM access_tokens t \
                          WHERE t.grant_id = grants.id AND ?1 < t.expires_at))",
                )?
                .execute(params![now, now.saturating_sub(REVOKED_GRANT_GRACE)])?
                as u64;
            let keys = tx
                .prepare_cached(
                    "DELETE FROM signing_keys WHERE retire_at IS NOT NULL AND retire_at < ?1",
                )?
                .execute([now])? as u64;
            let plex_pins = tx
                .prepare_cached("DELETE FROM plex_pins WHERE expires_at <= ?1")?
                .execute([now])? as u64;
            let guest_links = tx
                .prepare_cached("DELETE FROM jitsi_guest_links WHERE expires_at <= ?1")?
                .execute([now])? as u64;
            let links = tx
                .prepare_cached(
                    "DELETE FROM links WHERE expires_at < ?1 \
                     OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
                )?
                .execute([now.saturating_sub(LINK_GRACE)])? as u64;
            let lockouts =
                tx.prepare_cached(
                    "DELETE FROM lockouts WHERE updated_at < ?2 AND blocked_until < ?1",
                )?
                .execute(params![now, now.saturating_sub(LOCKOUT_IDLE)])? as u64;
            let passkey_challenges =
                delete("DELETE FROM passkey_challenges WHERE expires_at <= ?1", now)?;
            tx.commit()?;
            Ok(Swept {
                sessions,
                flows,
                codes,
                access_tokens,
                refresh_tokens,
                grants,
                keys,
                plex_pins,
                guest_links,
                lockouts,
                links,
                passkey_challenges,
            })
        })
        .await
    }

    async fn put_identity(&self, identity: &Identity) -> StoreResult<()> {
        self.write_identity(identity, "INSERT OR REPLACE")
            .await
            .map(|_| ())
    }

    async fn insert_identity(&self, identity: &Identity) -> StoreResult<bool> {
        self.write_identity(identity, "INSERT OR IGNORE").await
    }

    async fn get_identity(&self, provider: &str, subject: &str) -> StoreResult<Option<Identity>> {
        let (provider, subject) = (provider.to_owned(), subject.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                identity_cols!(),
                " FROM identities WHERE provider = ?1 AND subject = ?2"
            ))?
            .query_row(params![provider, subject], identity_from_row)
            .optional()
        })
        .await
    }

    async fn user_identity(&self, user_id: &str, provider: &str) -> StoreResult<Option<Identity>> {
        let (user_id, provider) = (user_id.to_owned(), provider.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                identity_cols!(),
                " FROM identities WHERE user_id = ?1 AND provider = ?2 \
                  ORDER BY updated_at DESC LIMIT 1"
            ))?
            .query_row(params![user_id, provider], identity_from_row)
            .optional()
        })
        .await
    }

    async fn put_plex_pin(&self, pin: &PlexPin) -> StoreResult<()> {
        let p = pin.clone();
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT OR REPLACE INTO plex_pins (",
                pin_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                p.flow_hash,
                p.browser_hash,
                p.pin_id,
                p.code,
                p.created_at,
                p.expires_at,
                p.next_poll_ms
            ])
            .map(|_| ())
        })
        .await
    }

    async fn get_plex_pin(&self, flow_hash: &Hash) -> StoreResult<Option<PlexPin>> {
        let flow_hash = *flow_hash;
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                pin_cols!(),
                " FROM plex_pins WHERE flow_hash = ?1"
            ))?
            .query_row([flow_hash], pin_from_row)
            .optional()
        })
        .await
    }

    async fn claim_plex_poll(
        &self,
        flow_hash: &Hash,
        now_ms: i64,
        next_ms: i64,
    ) -> StoreResult<bool> {
        let flow_hash = *flow_hash;
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE plex_pins SET next_poll_ms = ?3 WHERE flow_hash = ?1 AND next_poll_ms <= ?2",
            )?
            .execute(params![flow_hash, now_ms, next_ms])
            .map(|n| n == 1)
        })
        .await
    }

    async fn delete_plex_pin(&self, flow_hash: &Hash, pin_id: i64) -> StoreResult<()> {
        let flow_hash = *flow_hash;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM plex_pins WHERE flow_hash = ?1 AND pin_id = ?2")?
                .execute(params![flow_hash, pin_id])
                .map(|_| ())
        })
        .await
    }

    async fn defer_plex_poll(
        &self,
        flow_hash: &Hash,
        pin_id: i64,
        next_ms: i64,
    ) -> StoreResult<()> {
        let flow_hash = *flow_hash;
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE plex_pins SET next_poll_ms = ?3 WHERE flow_hash = ?1 AND pin_id = ?2",
            )?
            .execute(params![flow_hash, pin_id, next_ms])
            .map(|_| ())
        })
        .await
    }

    async fn create_guest_link(&self, link: &GuestLink) -> StoreResult<()> {
        let l = link.clone();
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO jitsi_guest_links (",
                guest_link_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                l.id,
                l.room,
                l.created_by,
                l.uses,
                l.uses_left,
                l.created_at,
                l.expires_at,
                l.revoked_at
            ])
            .map(|_| ())
        })
        .await
    }

    async fn use_guest_link(&self, id: &str, room: &str, now: Timestamp) -> StoreResult<bool> {
        let (id, room) = (id.to_owned(), room.to_owned());
        // One statement checks and takes the use: of two racing guests only one sees it left.
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE jitsi_guest_links SET uses_left = uses_left - 1 \
                 WHERE id = ?1 AND room = ?2 AND uses_left > 0 AND revoked_at IS NULL \
                 AND ?3 < expires_at",
            )?
            .execute(params![id, room, now])
            .map(|n| n == 1)
        })
        .await
    }

    async fn list_guest_links(
        &self,
        created_by: &str,
        room: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<GuestLink>> {
        let (created_by, room) = (created_by.to_owned(), room.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                guest_link_cols!(),
                " FROM jitsi_guest_links WHERE created_by = ?1 AND room = ?2 \
                  AND revoked_at IS NULL AND uses_left > 0 AND ?3 < expires_at \
                  ORDER BY created_at DESC, id"
            ))?
            .query_map(params![created_by, room, now], guest_link_from_row)?
            .collect()
        })
        .await
    }

    async fn revoke_guest_link(
        &self,
        id: &str,
        created_by: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (id, created_by) = (id.to_owned(), created_by.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE jitsi_guest_links SET revoked_at = ?3 \
                 WHERE id = ?1 AND created_by = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![id, created_by, now])
            .map(|n| n == 1)
        })
        .await
    }

    async fn create_forward_auth_session(
        &self,
        id_hash: &Hash,
        session_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (id_hash, session_hash) = (*id_hash, *session_hash);
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO forward_auth_sessions (id_hash, session_hash, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id_hash, session_hash, now])
            .map(|_| ())
        })
        .await
    }

    async fn forward_auth_parent(&self, id_hash: &Hash) -> StoreResult<Option<Hash>> {
        let id_hash = *id_hash;
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT session_hash FROM forward_auth_sessions WHERE id_hash = ?1",
            )?
            .query_row([id_hash], |row| row.get(0))
            .optional()
        })
        .await
    }

    async fn backup(&self, path: &Path) -> StoreResult<()> {
        let source = self.inner.path.clone();
        let target = path.to_path_buf();
        blocking(move || backup_to(&source, &target)).await
    }

    // ---- /account: the applications a user signed in to, their other sessions ----

    async fn list_user_grants(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Grant>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                grant_cols!(),
                " FROM grants g WHERE g.user_id = ?1 AND g.revoked_at IS NULL \
                 AND g.expires_at > ?2 AND EXISTS (SELECT 1 FROM refresh_tokens r \
                 WHERE r.grant_id = g.id AND r.used_at IS NULL AND r.expires_at > ?2) \
                 ORDER BY g.created_at, g.id"
            ))?
            .query_map(params![user_id, now], grant_from_row)?
            .collect()
        })
        .await
    }

    async fn delete_user_sessions_except(&self, user_id: &str, keep: &Hash) -> StoreResult<u64> {
        let (user_id, keep) = (user_id.to_owned(), *keep);
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND id_hash <> ?2")?
                .execute(params![user_id, keep])
                .map(|n| n as u64)
        })
        .await
    }

    // ---- invite and reset links ----

    async fn create_link(&self, link: &Link) -> StoreResult<()> {
        let l = link.clone();
        self.write(move |conn| {
            insert_link(
                conn,
                concat!(
                    "INSERT INTO links (",
                    link_cols!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                &l,
                &[],
            )
            .map(|_| ())
        })
        .await
    }

    async fn take_link_use(
        &self,
        token_hash: &Hash,
        kind: LinkKind,
        now: Timestamp,
    ) -> StoreResult<Option<Link>> {
        let token_hash = *token_hash;
        // One statement checks and takes the use: of two racing redemptions only one sees it.
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "UPDATE links SET uses_left = uses_left - 1 \
                 WHERE token_hash = ?1 AND kind = ?2 AND uses_left > 0 \
                 AND revoked_at IS NULL AND ?3 < expires_at RETURNING ",
                link_cols!()
            ))?
            .query_row(params![token_hash, kind.as_str(), now], link_from_row)
            .optional()
        })
        .await
    }

    async fn give_back_link_use(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE links SET uses_left = uses_left + 1 WHERE id = ?1 AND uses_left < uses",
            )?
            .execute([id])
            .map(|_| ())
        })
        .await
    }

    async fn find_link(&self, token_hash: &Hash, now: Timestamp) -> StoreResult<Option<Link>> {
        let token_hash = *token_hash;
        let cutoff = now.saturating_sub(LINK_GRACE);
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                link_cols!(),
                " FROM links WHERE token_hash = ?1 AND ?2 <= expires_at \
                  AND (revoked_at IS NULL OR ?2 <= revoked_at)"
            ))?
            .query_row(params![token_hash, cutoff], link_from_row)
            .optional()
        })
        .await
    }

    async fn list_links(&self, kind: LinkKind, now: Timestamp) -> StoreResult<Vec<Link>> {
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                link_cols!(),
                " FROM links WHERE kind = ?1 AND revoked_at IS NULL AND ?2 < expires_at \
                  ORDER BY created_at DESC, id"
            ))?
            .query_map(params![kind.as_str(), now], link_from_row)?
            .collect()
        })
        .await
    }

    async fn revoke_link(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE links SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL \
                 AND ?2 < expires_at",
            )?
            .execute(params![id, now])
            .map(|n| n == 1)
        })
        .await
    }

    // ---- /admin ----

    async fn set_user_name_and_groups(
        &self,
        id: &str,
        name: Option<&str>,
        groups: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (id, name, groups) = (id.to_owned(), name.map(str::to_owned), groups.to_vec());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET name = ?2, groups = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, name, to_json(&groups)?, now])
        })
        .await
        .and_then(one_row)
    }

    async fn mark_email_verified(
        &self,
        id: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (id, email) = (id.to_owned(), email.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET email_verified = 1, updated_at = ?2 \
                 WHERE id = ?1 AND email IS NOT NULL AND email = ?3",
            )?
            .execute(params![id, now, email])
            .map(|n| n == 1)
        })
        .await
    }

    async fn list_sessions(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Session>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions WHERE ?1 < expires_at ORDER BY created_at DESC LIMIT ?2"
            ))?
            .query_map(params![now, limit], session_from_row)?
            .collect()
        })
        .await
    }

    async fn retire_user(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        // As `delete_user`, with the username kept in `retired_usernames` (migration 0010) in
        // the same transaction: no later account inherits it.
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO retired_usernames (username, user_id) \
                 SELECT lower(username), id FROM users WHERE id = ?1",
            )?
            .execute([&id])?;
            let deleted = tx
                .prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute([&id])?;
            if deleted > 0 {
                tx.prepare_cached("DELETE FROM lockouts WHERE account = ?1")?
                    .execute([&id])?;
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
        .and_then(one_row)
    }

    async fn username_retired(&self, username: &str) -> StoreResult<bool> {
        let username = username.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM retired_usernames WHERE username = lower(?1)")?
                .query_row([username], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        })
        .await
    }

    async fn create_link_limited(
        &self,
        link: &Link,
        max: u32,
        since: Timestamp,
    ) -> StoreResult<bool> {
        let l = link.clone();
        // One statement counts and inserts: parallel requests cannot both see room for one.
        self.write(move |conn| {
            insert_link(
                conn,
                concat!(
                    "INSERT INTO links (",
                    link_cols!(),
                    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
                     WHERE (SELECT COUNT(*) FROM links WHERE kind = ?3 AND user_id IS ?8 \
                     AND created_at >= ?15) < ?16"
                ),
                &l,
                &[&since, &max],
            )
            .map(|n| n == 1)
        })
        .await
    }

    // ---- passkeys ----

    async fn add_passkey(&self, passkey: &Passkey) -> StoreResult<()> {
        let p = passkey.clone();
        let transports = serde_json::to_string(&p.transports).unwrap_or_else(|_| "[]".into());
        self.write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO passkeys (",
                passkey_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?
            .execute(params![
                p.id,
                p.credential_id,
                p.user_id,
                p.public_key,
                p.alg,
                p.sign_count,
                transports,
                p.name,
                p.aaguid,
                p.backup_eligible,
                p.backed_up,
                p.discoverable,
                p.created_at,
                p.last_used_at
            ])
            .map(|_| ())
        })
        .await
    }

    async fn list_passkeys(&self, user_id: &str) -> StoreResult<Vec<Passkey>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                passkey_cols!(),
                " FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"
            ))?
            .query_map([user_id], passkey_from_row)?
            .collect()
        })
        .await
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> StoreResult<Option<Passkey>> {
        let credential_id = credential_id.to_vec();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                passkey_cols!(),
                " FROM passkeys WHERE credential_id = ?1"
            ))?
            .query_row([credential_id], passkey_from_row)
            .optional()
        })
        .await
    }

    async fn use_passkey(
        &self,
        id: &str,
        count: u32,
        backed_up: bool,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let id = id.to_owned();
        // One statement compares and records: of two replicas racing with one assertion (or
        // a clone behind the original), one sees the counter still below.
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE passkeys SET sign_count = ?2, backed_up = ?3, last_used_at = ?4 \
                 WHERE id = ?1 AND (sign_count < ?2 OR (sign_count = 0 AND ?2 = 0))",
            )?
            .execute(params![id, count, backed_up, now])
            .map(|n| n == 1)
        })
        .await
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        let (user_id, id, name) = (user_id.to_owned(), id.to_owned(), name.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("UPDATE passkeys SET name = ?3 WHERE id = ?2 AND user_id = ?1")?
                .execute(params![user_id, id, name])
                .map(|n| n == 1)
        })
        .await
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx
                .prepare_cached("DELETE FROM passkeys WHERE id = ?2 AND user_id = ?1")?
                .execute(params![user_id, id])?;
            forget_codes_without_factor(&tx, &user_id)?;
            tx.commit()?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn remove_totp(&self, user_id: &str) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx
                .prepare_cached("DELETE FROM totp WHERE user_id = ?1")?
                .execute([&user_id])?;
            forget_codes_without_factor(&tx, &user_id)?;
            tx.commit()?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn passkey_counts(&self) -> StoreResult<Vec<(String, u32)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT user_id, COUNT(*) FROM passkeys GROUP BY user_id ORDER BY user_id",
            )?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
        })
        .await
    }

    async fn put_passkey_challenge(&self, challenge: &PasskeyChallenge) -> StoreResult<()> {
        let c = challenge.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO passkey_challenges \
                 (challenge_hash, binding_hash, ceremony, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                c.challenge_hash,
                c.binding_hash,
                c.ceremony,
                c.expires_at
            ])?;
            tx.prepare_cached(
                "DELETE FROM passkey_challenges WHERE binding_hash = ?1 AND rowid NOT IN \
                 (SELECT rowid FROM passkey_challenges WHERE binding_hash = ?1 \
                  ORDER BY rowid DESC LIMIT ?2)",
            )?
            .execute(params![
                c.binding_hash,
                super::PASSKEY_CHALLENGES_PER_BINDING
            ])?;
            tx.commit()
        })
        .await
    }

    async fn take_passkey_challenge(
        &self,
        challenge_hash: &Hash,
        binding_hash: &Hash,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        let (challenge_hash, binding_hash) = (*challenge_hash, *binding_hash);
        self.write(move |conn| {
            let taken: Option<(String, Timestamp)> = conn
                .prepare_cached(
                    "DELETE FROM passkey_challenges WHERE challenge_hash = ?1 \
                     AND binding_hash = ?2 RETURNING ceremony, expires_at",
                )?
                .query_row(params![challenge_hash, binding_hash], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            Ok(taken.and_then(|(ceremony, expires_at)| (now < expires_at).then_some(ceremony)))
        })
        .await
    }

    async fn session_clients(
        &self,
        user_id: &str,
        sid: Option<&str>,
    ) -> StoreResult<Vec<super::SessionClient>> {
        let (user_id, sid) = (user_id.to_owned(), sid.map(str::to_owned));
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT DISTINCT client_id, sid FROM grants WHERE user_id = ?1 \
                 AND revoked_at IS NULL AND (?2 IS NULL OR sid = ?2) ORDER BY client_id, sid",
            )?
            .query_map(params![user_id, sid], |row| {
                Ok(super::SessionClient {
                    client_id: row.get(0)?,
                    sid: row.get(1)?,
                })
            })?
            .collect()
        })
        .await
    }
}

/// Deletes the user's recovery codes when they have no second factor left (no TOTP, no
/// passkey), inside the caller's transaction: codes exist only beside a factor.
fn forget_codes_without_factor(conn: &Connection, user_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM recovery_codes WHERE user_id = ?1 \
         AND NOT EXISTS (SELECT 1 FROM totp WHERE user_id = ?1) \
         AND NOT EXISTS (SELECT 1 FROM passkeys WHERE user_id = ?1)",
    )?
    .execute([user_id])?;
    Ok(())
}

fn passkey_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Passkey> {
    let transports: String = row.get(6)?;
    Ok(Passkey {
        id: row.get(0)?,
        credential_id: row.get(1)?,
        user_id: row.get(2)?,
        public_key: row.get(3)?,
        alg: row.get(4)?,
        sign_count: row.get(5)?,
        transports: serde_json::from_str(&transports).unwrap_or_default(),
        name: row.get(7)?,
        aaguid: row.get(8)?,
        backup_eligible: row.get(9)?,
        backed_up: row.get(10)?,
        discoverable: row.get(11)?,
        created_at: row.get(12)?,
        last_used_at: row.get(13)?,
    })
}

/// Writes a compacted, consistent snapshot of `source` to the new file `target` (0600).
fn backup_to(source: &Path, target: &Path) -> StoreResult<()> {
    let target_str = target.to_str().ok_or_else(|| {
        StoreError::BackupTarget(format!(
            "{} is not a UTF-8 path; choose another path",
            target.display()
        ))
    })?;
    // Create the (empty) target ourselves: `create_new` refuses to overwrite an existing file,
    // and the copy gets 0600 from the start. VACUUM INTO accepts an existing empty file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(|e| {
            let shown = target.display();
            StoreError::BackupTarget(match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    format!("{shown} already exists; choose another path or delete it")
                }
                std::io::ErrorKind::NotFound => {
                    format!("cannot create {shown}: its directory does not exist; create it first")
                }
                _ => format!("cannot create {shown}: {e}; choose a path doorman can write"),
            })
        })?;
    // A connection of its own (read-only), so a long copy ties up neither the writer nor a
    // pooled reader. VACUUM INTO reads in one transaction: the copy is a consistent snapshot.
    let result = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute("VACUUM INTO ?1", [target_str])
    })
    .map_err(map_err);
    if result.is_err() {
        // Do not leave an empty or partial file that looks like a backup.
        let _ = std::fs::remove_file(target);
    }
    result.map(|_| ())
}

/// Deletes the user's recovery codes and inserts `codes` (inside the caller's transaction).
fn replace_codes_on(
    conn: &Connection,
    user_id: &str,
    codes: &[Hash],
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?
        .execute([user_id])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO recovery_codes (user_id, hash, created_at, used_at) \
         VALUES (?1, ?2, ?3, NULL)",
    )?;
    for code in codes {
        insert.execute(params![user_id, code, now])?;
    }
    Ok(())
}

/// Marks a code used, in one transaction with (on a first use) the access token it buys.
fn redeem_on(
    conn: &mut Connection,
    hash: &Hash,
    now: Timestamp,
    access: Option<(Hash, Timestamp)>,
) -> rusqlite::Result<CodeRedemption> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Marking and reading in one statement: of two concurrent redemptions only one can see
    // `used_at IS NULL`. Expiry and grant revocation are left to the caller, who gets both
    // back.
    let fresh = tx
        .prepare_cached(concat!(
            "UPDATE auth_codes SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL RETURNING ",
            code_cols!()
        ))?
        .query_row(params![hash, now], code_from_row)
        .optional()?;
    let outcome = match fresh {
        Some(code) => match grant_by_id(&tx, &code.grant_id)? {
            Some(grant) => {
                if let Some((access_hash, expires_at)) = access {
                    tx.prepare_cached(
                        "INSERT INTO access_tokens \
                         (hash, grant_id, client_id, user_id, scope, created_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        access_hash,
                        grant.id,
                        grant.client_id,
                        grant.user_id,
                        grant.scope,
                        now,
                        expires_at
                    ])?;
                }
                CodeRedemption::Fresh(code, grant)
            }
            // Impossible with the foreign key; treat like an unknown code.
            None => CodeRedemption::NotFound,
        },
        None => {
            let seen = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    code_cols!(),
                    " FROM auth_codes WHERE hash = ?1"
                ))?
                .query_row([hash], code_from_row)
                .optional()?;
            match seen {
                // A second use means the code leaked: everything issued from it dies
                // (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
                Some(code) => {
                    revoke_grant_on(&tx, &code.grant_id, now)?;
                    CodeRedemption::Replayed(code)
                }
                None => CodeRedemption::NotFound,
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}
