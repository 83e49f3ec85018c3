package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MovieMarker starts the title of every movie a run seeds. It is a prefix
// no movie created through the API can collide with by accident, and the
// cleanup deletes by it.
const MovieMarker = "loadtest-"

// movieTitlePrefix is the title prefix of one run's movies.
func movieTitlePrefix(runID string) string { return MovieMarker + runID + " " }

// SearchTerm is the title term with SearchHits hits among the million
// movies SeedMovies makes: every title ends in k<n mod 10000>k.
const (
	SearchTerm = "k4242k"
	SearchHits = 100
)

// SeedMovies inserts n movies in one statement (generate_series) and
// returns their ids. Titles are "<marker><run> <i> k<i mod 10000>k", so
// that SearchTerm matches n/10000 of them.
func SeedMovies(ctx context.Context, conn *pgx.Conn, runID string, n int) ([]int64, error) {
	rows, err := conn.Query(ctx, `
		INSERT INTO movies (title, description)
		SELECT $1 || g || ' k' || (g % 10000) || 'k',
		       'a movie the load test made, number ' || g || ', to be deleted when it ends'
		FROM generate_series(1, $2::int) AS g
		RETURNING id`, movieTitlePrefix(runID), n)
	if err != nil {
		return nil, fmt.Errorf("loadtest: seed %d movies: %w", n, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("loadtest: seed %d movies: %w", n, err)
	}
	return ids, nil
}

// SeedMoviesQuiet is SeedMovies without the ids, for the million.
func SeedMoviesQuiet(ctx context.Context, conn *pgx.Conn, runID string, n int) error {
	_, err := conn.Exec(ctx, `
		INSERT INTO movies (title, description)
		SELECT $1 || g || ' k' || (g % 10000) || 'k',
		       'a movie the load test made, number ' || g || ', to be deleted when it ends'
		FROM generate_series(1, $2::int) AS g`, movieTitlePrefix(runID), n)
	if err != nil {
		return fmt.Errorf("loadtest: seed %d movies: %w", n, err)
	}
	return nil
}

// DeleteMovies removes the movies of run and returns how many there were.
func DeleteMovies(ctx context.Context, conn *pgx.Conn, runID string) (int64, error) {
	tag, err := conn.Exec(ctx, `DELETE FROM movies WHERE starts_with(title, $1)`, movieTitlePrefix(runID))
	if err != nil {
		return 0, fmt.Errorf("loadtest: delete the load test's movies: %w", err)
	}
	return tag.RowsAffected(), nil
}

// VacuumAnalyze reclaims the deleted rows' space and refreshes the
// planner's statistics, so that the table is as it was before the run.
func VacuumAnalyze(ctx context.Context, conn *pgx.Conn, table string) error {
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{table}.Sanitize()); err != nil {
		return fmt.Errorf("loadtest: vacuum analyze %s: %w", table, err)
	}
	return nil
}

// Analyze refreshes the planner's statistics after the seeding.
func Analyze(ctx context.Context, conn *pgx.Conn, table string) error {
	if _, err := conn.Exec(ctx, "ANALYZE "+pgx.Identifier{table}.Sanitize()); err != nil {
		return fmt.Errorf("loadtest: analyze %s: %w", table, err)
	}
	return nil
}

// CountMovies returns the number of rows in movies.
func CountMovies(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM movies`).Scan(&n); err != nil {
		return 0, fmt.Errorf("loadtest: count movies: %w", err)
	}
	return n, nil
}

// StreamMovies is the list row's reference: every movie read from
// PostgreSQL in id order and encoded as inventory's JSON array into w as it
// comes, with nothing between the rows and the encoder. It returns how
// long that took and how many movies there were.
func StreamMovies(ctx context.Context, conn *pgx.Conn, w interface{ Write([]byte) (int, error) }) (time.Duration, int64, error) {
	start := time.Now()
	rows, err := conn.Query(ctx, `SELECT id, title, description FROM movies ORDER BY id`)
	if err != nil {
		return 0, 0, fmt.Errorf("loadtest: stream movies: %w", err)
	}
	defer rows.Close()
	enc := newMovieEncoder(w)
	var (
		id          int64
		title, desc string
	)
	for rows.Next() {
		if err := rows.Scan(&id, &title, &desc); err != nil {
			return 0, 0, fmt.Errorf("loadtest: stream movies: %w", err)
		}
		if err := enc.movie(id, title, desc); err != nil {
			return 0, 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("loadtest: stream movies: %w", err)
	}
	if err := enc.close(); err != nil {
		return 0, 0, err
	}
	return time.Since(start), enc.n, nil
}

// SearchQuery is the list row's search in SQL, as a reference for the
// search row: the case-insensitive contains-search on the million, timed
// in PostgreSQL without HTTP in between. It escapes nothing: SearchTerm
// holds no LIKE wildcard.
func SearchQuery(ctx context.Context, conn *pgx.Conn, term string) (time.Duration, int, error) {
	start := time.Now()
	rows, err := conn.Query(ctx, `SELECT id, title, description FROM movies WHERE lower(title) LIKE '%' || lower($1) || '%' ORDER BY id`, term)
	if err != nil {
		return 0, 0, fmt.Errorf("loadtest: search %q: %w", term, err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("loadtest: search %q: %w", term, err)
	}
	return time.Since(start), n, nil
}
