-- 0005: the `sid` of the SSO session a grant was made in (its id_tokens carry it), and Jitsi
-- guest links, whose uses are counted here so that a single-use link admits one guest.

-- NULL for grants made before this migration: their id_tokens carry no sid.
ALTER TABLE grants ADD COLUMN sid TEXT;

CREATE TABLE jitsi_guest_links (
    id          TEXT    PRIMARY KEY NOT NULL,
    -- The roomSafe name of the room the link opens.
    room        TEXT    NOT NULL,
    created_by  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    uses        INTEGER NOT NULL,
    uses_left   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX jitsi_guest_links_creator ON jitsi_guest_links (created_by, room);
