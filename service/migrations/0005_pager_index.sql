-- no-transaction
-- The pager's index, built without blocking writes; CONCURRENTLY needs a migration of its own,
-- outside a transaction, holding this one statement. It waits for transactions older than
-- itself instead of locking them out, so no lock or statement timeout is set here.
-- squawk-ignore require-lock-timeout, require-statement-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_pager ON orders (created_xid, seq);
