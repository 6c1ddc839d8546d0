-- Forward-auth sessions: the `doorman_fa` cookie set on the shared cookie domain. Each hangs off
-- an SSO session (and ends with it), but is a different secret: a cookie readable by every app
-- host can answer forward-auth checks and nothing else.
CREATE TABLE forward_auth_sessions (
    id_hash       BLOB    PRIMARY KEY,
    session_hash  BLOB    NOT NULL REFERENCES sessions (id_hash) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL
);
CREATE INDEX forward_auth_sessions_parent ON forward_auth_sessions (session_hash);
