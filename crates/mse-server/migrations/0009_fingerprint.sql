-- The fingerprint (MRENCLAVE, hex) an app's node reported when it started,
-- for the console's "how to verify" line. A node's claim, shown as such:
-- app users take the fingerprint from the owner, not from the platform.
ALTER TABLE apps ADD COLUMN fingerprint TEXT;
