-- Orders created before 0003 sort first, among themselves in seq order. Row locks only, in a
-- transaction of its own, so the table stays readable and writable meanwhile.
SET LOCAL statement_timeout = 0;
UPDATE orders SET created_xid = '0' WHERE created_xid IS NULL;
