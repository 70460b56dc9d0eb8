-- The root key's recovery shares (docs/keys.md), each sealed to its
-- holder's key by the replica that made the root key: a JSON array, or
-- NULL when the operator named no holders then.
ALTER TABLE key_root ADD COLUMN shares TEXT;
