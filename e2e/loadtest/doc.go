// Package loadtest holds the pieces of `make loadtest` (scripts/loadtest.sh)
// that are easier in Go than in bash: running wrk and reading its figures,
// the reference programs measured in the same run (raw confirmed
// publishing, a bare pgx + amqp091 consumer, rows streamed straight from
// PostgreSQL), seeding and removing the load test's own movies and orders,
// sampling the services' memory, and printing the one table.
//
// Everything it creates carries the run's marker (movies' titles, orders'
// user_id, test.* queue names, a scratch database), so that it deletes
// exactly what it made, also from a later run's cleanup after a crash.
package loadtest
