-- The orders table as it was before versioned migrations. IF NOT EXISTS
-- adopts a table that the old start-up code already created, rows and all.
-- total_amount is numeric(12,2) because money is never a float; message_id
-- is UNIQUE so a redelivered message cannot become a second order (NULLs,
-- from messages published by hand without an id, do not collide).

-- +goose Up
CREATE TABLE IF NOT EXISTS orders (
	id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id      text UNIQUE,
	user_id         text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
	number_of_items integer NOT NULL CHECK (number_of_items >= 1),
	total_amount    numeric(12,2) NOT NULL CHECK (total_amount >= 0),
	created_at      timestamptz NOT NULL DEFAULT now()
);
