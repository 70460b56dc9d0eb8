-- An app the key service keeps, with persistent storage, moving off a
-- drained node: why. Its node is stopped first (writing its home back),
-- and the app is placed again once it has stopped.
ALTER TABLE apps ADD COLUMN moving TEXT;
