-- 0012: a session's public `sid` is stored, so it survives a new sign-in of the same user in
-- the same browser (a step-up, prompt=login): the cookie and the id hash rotate, the sid the
-- applications hold in their id_tokens (and back-channel logout names) stays. NULL for
-- sessions from before: their sid is still derived from the id hash.
ALTER TABLE sessions ADD COLUMN sid TEXT;
