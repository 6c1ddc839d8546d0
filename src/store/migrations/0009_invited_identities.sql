-- 0009: a Plex identity linked on an invite page. The invite, not a share of the configured
-- Plex servers, lets such an account in: its access is not re-checked with plex.tv.
ALTER TABLE identities ADD COLUMN by_invite INTEGER NOT NULL DEFAULT 0;
