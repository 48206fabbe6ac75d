-- Idempotency keys belong to the credential that used them, and expire.
-- Keys from before this change belong to no credential (scope ''), so they never replay and
-- are removed once they are older than the time to live.

ALTER TABLE idempotency_keys ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key);
-- Expired keys are deleted by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
