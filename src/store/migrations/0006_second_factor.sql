-- 0006: the second factor (TOTP and recovery codes), per-account sign-in lockouts kept in the
-- database (so every replica counts the same failures), and the `acr` of a grant.

-- One TOTP per user. The secret is encrypted by the caller (`secrets::SecretBox`); last_step
-- is the newest time step accepted, so a code is never accepted twice (NULL: none yet).
CREATE TABLE totp (
    user_id     TEXT    PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret      BLOB    NOT NULL,
    enabled_at  INTEGER NOT NULL,
    last_step   INTEGER
);

-- Recovery codes, as SHA-256 digests; a used code keeps its row (used_at set) until the set
-- is replaced.
CREATE TABLE recovery_codes (
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, hash)
);

-- Failed sign-in counters per (account, client IP) and per account over all IPs (ip = '').
-- No foreign key: attempts on unknown usernames are counted too.
CREATE TABLE lockouts (
    account       TEXT    NOT NULL,
    ip            TEXT    NOT NULL,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (account, ip)
);

-- The `acr` claim of the grant's id_tokens; NULL when the client did not ask with acr_values.
ALTER TABLE grants ADD COLUMN acr TEXT;
