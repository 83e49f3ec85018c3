-- pg_trgm, for the trigram index of 0003. It ships with PostgreSQL and is a
-- trusted extension (13+): the database's owner creates it without being a
-- superuser, and both the inventory's role and the tests' CREATEDB role own
-- their databases.

-- +goose Up
CREATE EXTENSION IF NOT EXISTS pg_trgm;
