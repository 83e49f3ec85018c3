-- An idempotency key belongs to one user: two users who both send
-- Idempotency-Key: order-42 make two orders. The key that dedupes is
-- therefore (user_id, message_id). Built CONCURRENTLY so that a live table
-- keeps taking orders meanwhile; that cannot run inside a transaction.
-- A failed concurrent build leaves an INVALID index behind that IF NOT
-- EXISTS would keep: such a leftover is dropped first, so a rerun builds
-- the index again.

-- +goose NO TRANSACTION
-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	           WHERE c.relname = 'orders_user_id_message_id_key' AND NOT i.indisvalid) THEN
		EXECUTE 'ALTER INDEX orders_user_id_message_id_key RENAME TO orders_user_id_message_id_key_invalid';
	END IF;
END $$;
-- +goose StatementEnd
DROP INDEX CONCURRENTLY IF EXISTS orders_user_id_message_id_key_invalid;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_message_id_key ON orders (user_id, message_id);
