package moviedb_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"moviestream/services/inventory/internal/movie"
	"moviestream/services/inventory/internal/moviedb"
	"moviestream/services/inventory/internal/moviedb/moviedbtest"
)

// TestEachFilters: keyset pages, limits and the title search combine, in
// id order.
func TestEachFilters(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)
	var all []movie.Movie
	for _, title := range []string{"Alien", "Aliens", "Brazil", "Alien 3", "Casablanca", "Alien: Resurrection"} {
		all = append(all, mustCreate(t, s, title, ""))
	}
	// A deleted row leaves a gap that pages step over.
	if _, err := s.Delete(ctx, all[2].ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	pick := func(idx ...int) []movie.Movie {
		out := []movie.Movie{}
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}
	tests := []struct {
		name string
		f    movie.Filter
		want []movie.Movie
	}{
		{"everything", movie.Filter{}, pick(0, 1, 3, 4, 5)},
		{"first page", movie.Filter{Limit: 2}, pick(0, 1)},
		{"second page over the gap", movie.Filter{Limit: 2, AfterID: all[1].ID}, pick(3, 4)},
		{"last page is short", movie.Filter{Limit: 2, AfterID: all[4].ID}, pick(5)},
		{"after the last id", movie.Filter{Limit: 2, AfterID: all[5].ID}, pick()},
		{"after a deleted id", movie.Filter{AfterID: all[2].ID}, pick(3, 4, 5)},
		{"after_id without limit is the rest", movie.Filter{AfterID: all[0].ID}, pick(1, 3, 4, 5)},
		{"search", movie.Filter{TitleContains: "alien"}, pick(0, 1, 3, 5)},
		{"search, first page", movie.Filter{TitleContains: "ALIEN", Limit: 3}, pick(0, 1, 3)},
		{"search, next page", movie.Filter{TitleContains: "ALIEN", Limit: 3, AfterID: all[3].ID}, pick(5)},
		{"limit larger than the table", movie.Filter{Limit: movie.MaxPageSize}, pick(0, 1, 3, 4, 5)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := collect(testContext(t), s, tc.f)
			if err != nil {
				t.Fatalf("Each(%+v): %v", tc.f, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Each(%+v) (-want +got):\n%s", tc.f, diff)
			}
		})
	}
}

// TestEachStopsOnCallbackError: the callback's error ends the listing at
// once and comes back unchanged, even one that looks like a network
// failure (a client's broken pipe is not a database outage); the store
// stays usable.
func TestEachStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	s, db := moviedbtest.Open(t)
	ctx := testContext(t)
	moviedbtest.SeedSeries(t, db, "Movie", 50_000, 100)

	for _, cause := range []error{errors.New("client wrote enough"), fmt.Errorf("write: %w", errBrokenPipe{})} {
		t.Run(cause.Error(), func(t *testing.T) {
			calls := 0
			start := time.Now()
			err := s.Each(ctx, movie.Filter{}, func(movie.Movie) error {
				calls++
				if calls == 3 {
					return cause
				}
				return nil
			})
			if !errors.Is(err, cause) || err.Error() != cause.Error() {
				t.Errorf("Each returned %v, want the callback's error unchanged", err)
			}
			if errors.Is(err, movie.ErrUnavailable) {
				t.Errorf("a callback error reads as an outage: %v", err)
			}
			if calls != 3 {
				t.Errorf("callback called %d times, want 3", calls)
			}
			// Reading the other 49,997 rows to close the result would take
			// far longer than cancelling it.
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Each took %v to stop", d)
			}
		})
	}
	got, err := collect(ctx, s, movie.Filter{Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("Each after stopped listings = %v, %v; want one movie", got, err)
	}
}

// errBrokenPipe looks like a lost connection (a net.Error), as a failed
// write to an HTTP client does.
type errBrokenPipe struct{}

func (errBrokenPipe) Error() string   { return "broken pipe" }
func (errBrokenPipe) Timeout() bool   { return false }
func (errBrokenPipe) Temporary() bool { return false }

// TestEachStopsWhenCancelled: cancelling the context (the HTTP client went
// away) ends the query on the server, not only the loop.
func TestEachStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	s, db := moviedbtest.Open(t)
	ctx := testContext(t)
	moviedbtest.SeedSeries(t, db, "Movie", 50_000, 100)

	listCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	calls := 0
	err := s.Each(listCtx, movie.Filter{}, func(movie.Movie) error {
		calls++
		if calls == 1 {
			// The query is running now; see it, then hang up.
			if n := moviedbtest.RunningLists(t, db); n != 1 {
				t.Errorf("%d listing queries running, want 1", n)
			}
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Each after cancel = %v, want context.Canceled", err)
	}
	if calls >= 50_000 {
		t.Errorf("every row was read (%d) despite the cancel", calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for moviedbtest.RunningLists(t, db) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the listing query still runs 5 s after the cancel")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSearchUsesTrigramIndex: on a table with realistic statistics the
// planner answers the title search through the trigram index (0003), for
// the very statement Each runs, instead of reading every row.
func TestSearchUsesTrigramIndex(t *testing.T) {
	t.Parallel()
	s, db := moviedbtest.Open(t)
	ctx := testContext(t)
	moviedbtest.SeedSeries(t, db, "Movie", 20_000, 40)
	moviedbtest.SeedSeries(t, db, "The Zebra Quest", 12, 40)
	if err := db.Exec(`ANALYZE movies`).Error; err != nil {
		t.Fatalf("ANALYZE: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}

	for _, f := range []movie.Filter{
		{TitleContains: "zebra"},
		{TitleContains: "ZEBRA QUEST 1"},
		{TitleContains: "quest", Limit: 11},
		{TitleContains: "quest", Limit: 11, AfterID: 100},
		{TitleContains: `100%_\`},
	} {
		t.Run(f.TitleContains, func(t *testing.T) {
			query, args := moviedb.ListSQL(f)
			if !strings.Contains(query, "lower(title) LIKE lower(") {
				t.Fatalf("not the indexed expression: %s", query)
			}
			var plan string
			// As Each runs it: an unnamed statement, planned for its values.
			args = append([]any{pgx.QueryExecModeExec}, args...)
			if err := sqlDB.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&plan); err != nil {
				t.Fatalf("EXPLAIN %s: %v", query, err)
			}
			if !strings.Contains(plan, `"Index Name": "movies_title_trgm_idx"`) {
				t.Errorf("the search does not use movies_title_trgm_idx:\n%s\nplan: %s", query, plan)
			}
		})
	}
	// And it finds what it should.
	got, err := collect(ctx, s, movie.Filter{TitleContains: "zebra quest 1"})
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, m := range got {
		titles = append(titles, m.Title)
	}
	want := []string{"The Zebra Quest 1", "The Zebra Quest 10", "The Zebra Quest 11", "The Zebra Quest 12"}
	if diff := cmp.Diff(want, titles); diff != "" {
		t.Errorf("search (-want +got):\n%s", diff)
	}
}

// BenchmarkEach lists 100,000 movies (titles ~20 bytes, descriptions 40)
// through Each: rows per second, and heap allocated per row, which must
// not depend on the number of rows.
func BenchmarkEach(b *testing.B) {
	const rows = 100_000
	s, db := moviedbtest.Open(b)
	ctx := testContext(b)
	moviedbtest.SeedSeries(b, db, "Benchmark movie", rows, 40)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.Each(ctx, movie.Filter{}, func(movie.Movie) error { n++; return nil }); err != nil {
			b.Fatalf("Each: %v", err)
		}
		if n != rows {
			b.Fatalf("Each visited %d rows, want %d", n, rows)
		}
	}
	runtime.ReadMemStats(&after)
	total := float64(b.N) * rows
	b.ReportMetric(total/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/total, "B/row")
}
