-- Every login writes a grant, a code and an access token; each index on them is one more page
-- written per login. The expiry indexes served only the five-minutely sweep, which scans these
-- short-lived tables just as well without them.
DROP INDEX IF EXISTS grants_expires_at;
DROP INDEX IF EXISTS auth_codes_expires_at;
DROP INDEX IF EXISTS access_tokens_expires_at;
