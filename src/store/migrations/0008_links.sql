-- 0008: invite and password-reset links. The token (256 random bits, in the link) is stored
-- only as its SHA-256 digest; `id` is a short public handle for listing and revoking. Uses
-- are counted here, so of two browsers racing for a link's last use exactly one wins.
CREATE TABLE links (
    id             TEXT    PRIMARY KEY NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE,
    -- 'invite' or 'reset'.
    kind           TEXT    NOT NULL,
    -- JSON list: the groups an invited account gets.
    groups         TEXT    NOT NULL,
    -- The invitee's email (invites).
    email          TEXT,
    -- The account's email is marked verified (the invite named it).
    email_verified INTEGER NOT NULL,
    note           TEXT,
    -- The account whose password a reset link sets.
    user_id        TEXT    REFERENCES users (id) ON DELETE CASCADE,
    uses           INTEGER NOT NULL,
    uses_left      INTEGER NOT NULL,
    -- Who made it: a username, or "cli". No foreign key: the creator may be deleted.
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);
CREATE INDEX links_kind ON links (kind, expires_at);
