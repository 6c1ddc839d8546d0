-- Sign in with Plex: identities at external providers, and PINs of pending Plex sign-ins.

-- A doorman user's account at an external provider, keyed by that provider's own account id
-- (never by email). Tokens are encrypted with the server's secret_key (nonce || ciphertext).
CREATE TABLE identities (
    provider      TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token         BLOB,
    server_token  BLOB,
    owner         INTEGER NOT NULL DEFAULT 0,
    allowed       INTEGER NOT NULL DEFAULT 1,
    checked_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities (user_id, provider);

-- The plex.tv PIN of a pending sign-in: bound to its flow and to the browser that started it.
-- next_poll_ms (milliseconds) lets every replica agree on at most one plex.tv poll per second.
CREATE TABLE plex_pins (
    flow_hash     BLOB    PRIMARY KEY,
    browser_hash  BLOB    NOT NULL,
    pin_id        INTEGER NOT NULL,
    code          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    next_poll_ms  INTEGER NOT NULL
);
CREATE INDEX plex_pins_expires ON plex_pins (expires_at);
