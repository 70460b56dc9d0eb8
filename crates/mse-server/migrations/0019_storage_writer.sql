-- The app (uuid) whose node wrote an app name's last snapshot: after
-- `mse rotate --storage-key`, a snapshot written by the new app's node is
-- sealed under the new key.
ALTER TABLE storage_heads ADD COLUMN written_by TEXT;
