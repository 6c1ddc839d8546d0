-- 0010: usernames of deleted accounts stay reserved. Applications key accounts on
-- `preferred_username` (Jellyfin, Grafana), so a later account must never inherit a deleted
-- user's name and with it their data there. Written in the transaction that deletes the user;
-- `create_user` refuses a name found here. Lower-cased (usernames are ASCII).
CREATE TABLE retired_usernames (
    username TEXT PRIMARY KEY NOT NULL,
    -- The deleted account's id (its old `sub`), for the record.
    user_id  TEXT NOT NULL
);
