package moviedb

import "moviestream/services/inventory/internal/movie"

// ListSQL returns the statement and arguments Each runs for f, without
// running it, so that tests can EXPLAIN exactly that statement.
func ListSQL(f movie.Filter) (string, []any) { return listQuery(f) }
