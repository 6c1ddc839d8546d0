-- 0011: passkeys (WebAuthn credentials) and the challenges of their ceremonies.

-- One row per registered credential. `id` is doorman's short handle (in URLs); the
-- credential id is the authenticator's and is unique across users: a credential is never
-- registered twice. The public key is the COSE_Key as the authenticator sent it, with its
-- algorithm (-7 ES256, -8 EdDSA, -257 RS256). `sign_count` only grows (a regression is a
-- cloned authenticator, refused). `transports` is a JSON list, a hint only. The user handle
-- the authenticator holds is the user id.
CREATE TABLE passkeys (
    id              TEXT    PRIMARY KEY NOT NULL,
    credential_id   BLOB    NOT NULL UNIQUE,
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_key      BLOB    NOT NULL,
    alg             INTEGER NOT NULL,
    sign_count      INTEGER NOT NULL,
    transports      TEXT    NOT NULL DEFAULT '[]',
    name            TEXT    NOT NULL,
    aaguid          BLOB,
    backup_eligible INTEGER NOT NULL,
    backed_up       INTEGER NOT NULL,
    discoverable    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER
);
CREATE INDEX passkeys_user_id ON passkeys (user_id);

-- A ceremony's challenge, single use on every replica: taken with one DELETE ... RETURNING.
-- `binding_hash` is the digest of the sign-in flow id or of the SSO session it was issued to;
-- `ceremony` (JSON) says what it is for. Expires with its flow (or after a few minutes).
CREATE TABLE passkey_challenges (
    challenge_hash  BLOB    PRIMARY KEY NOT NULL,
    binding_hash    BLOB    NOT NULL,
    ceremony        TEXT    NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX passkey_challenges_binding ON passkey_challenges (binding_hash);
