-- With (user_id, message_id) unique (0002), message_id alone no longer
-- identifies an order. Dropping a constraint takes a brief ACCESS
-- EXCLUSIVE lock and no table scan.

-- +goose Up
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_message_id_key;
