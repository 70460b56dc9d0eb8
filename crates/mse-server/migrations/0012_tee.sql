-- The kind of TEE each node runs in, the kinds a resource accepts (a
-- comma-separated list; empty: every kind) and the kind of the node an app
-- was placed on.
ALTER TABLE nodes ADD COLUMN tee TEXT NOT NULL DEFAULT 'simulation';
ALTER TABLE resources ADD COLUMN tees TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN tee TEXT;
