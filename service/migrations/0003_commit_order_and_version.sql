-- Creates no longer queue behind one lock. Each order records the transaction that created it
-- (created_xid), and the pager hands out only orders whose transaction is older than every
-- transaction still running, in (created_xid, seq) order: see README, "Pagination guarantee".
-- Each order also carries a version, bumped on every change; its ETag is that version.
--
-- Expand only, so pods of the previous release keep working on this schema during a rollout:
-- both columns are filled by defaults (their inserts name neither), and nothing they read or
-- write changes. Rows from before this migration get created_xid in 0004.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '5s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS created_xid xid8;
ALTER TABLE orders ALTER COLUMN created_xid SET DEFAULT pg_current_xact_id();
ALTER TABLE orders ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;
