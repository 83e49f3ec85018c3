package moviedb_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
	"moviestream/services/inventory/internal/movie"
	"moviestream/services/inventory/internal/moviedb"
	"moviestream/services/inventory/internal/moviedb/moviedbtest"
)

// The store satisfies the domain's interface.
var _ movie.Store = (*moviedb.Store)(nil)

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// newStore returns a migrated store over a fresh database.
func newStore(t *testing.T) *moviedb.Store {
	t.Helper()
	s, _ := moviedbtest.Open(t)
	return s
}

func mustCreate(t *testing.T, s *moviedb.Store, title, description string) movie.Movie {
	t.Helper()
	m, err := s.Create(testContext(t), title, description)
	if err != nil {
		t.Fatalf("Create(%q): %v", title, err)
	}
	return m
}

func mustGet(t *testing.T, s *moviedb.Store, id int64) movie.Movie {
	t.Helper()
	m, err := s.Get(testContext(t), id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

// search collects what Each visits for a title search.
func search(ctx context.Context, s *moviedb.Store, term string) ([]movie.Movie, error) {
	return collect(ctx, s, movie.Filter{TitleContains: term})
}

// collect gathers what Each visits for f; never nil.
func collect(ctx context.Context, s *moviedb.Store, f movie.Filter) ([]movie.Movie, error) {
	out := []movie.Movie{}
	err := s.Each(ctx, f, func(m movie.Movie) error {
		out = append(out, m)
		return nil
	})
	return out, err
}

func mustList(t *testing.T, s *moviedb.Store, term string) []movie.Movie {
	t.Helper()
	got, err := search(testContext(t), s, term)
	if err != nil {
		t.Fatalf("list %q: %v", term, err)
	}
	return got
}

func TestCreateGet(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)
	tests := []struct {
		name, title, description string
	}{
		{"plain", "Alien", "In space no one can hear you scream."},
		{"empty description", "Heat", ""},
		{"unicode", "Amélie — 天使 🎬", "Paris, 2001; ça marche"},
		{"255 two-byte characters", strings.Repeat("é", 255), strings.Repeat("é", 10_000)},
		{"quotes and SQL-looking text", `O'Brien "quoted"; DROP TABLE movies; --`, `\x00 is not a NUL here`},
		{"line breaks in description", "Notes", "line 1\nline 2\r\n\ttabbed"},
	}
	// Sequential on purpose: ids must grow with creation order.
	var lastID int64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			created, err := s.Create(ctx, tc.title, tc.description)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if created.ID <= lastID {
				t.Errorf("Create id = %d, want > %d", created.ID, lastID)
			}
			lastID = created.ID
			want := movie.Movie{ID: created.ID, Title: tc.title, Description: tc.description}
			if diff := cmp.Diff(want, created); diff != "" {
				t.Errorf("Create result mismatch (-want +got):\n%s", diff)
			}
			got, err := s.Get(ctx, created.ID)
			if err != nil {
				t.Fatalf("Get(%d): %v", created.ID, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Get mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListOrderedByID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)

	got := mustList(t, s, "")
	if got == nil || len(got) != 0 {
		t.Errorf("List on empty table = %#v, want an empty non-nil slice", got)
	}

	// Titles in reverse alphabetical order, so ordering by title would show.
	var want []movie.Movie
	for _, title := range []string{"Zodiac", "Yojimbo", "Xanadu", "Alien", "Brazil"} {
		want = append(want, mustCreate(t, s, title, "d "+title))
	}
	// Updating a middle row must not move it (no ordering by updated_at).
	updated, err := s.Update(ctx, want[1].ID, "Yojimbo (1961)", "")
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want[1] = updated

	got, err = search(ctx, s, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List mismatch (-want +got):\n%s", diff)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)
	m := mustCreate(t, s, "Alien", "old description")
	other := mustCreate(t, s, "Heat", "untouched")

	tests := []struct {
		name, title, description string
	}{
		{"replace both", "Aliens", "new description"},
		{"clear description", "Aliens", ""},
		{"unicode", "Ælien", "é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Update(ctx, m.ID, tc.title, tc.description)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want := movie.Movie{ID: m.ID, Title: tc.title, Description: tc.description}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Update result mismatch (-want +got):\n%s", diff)
			}
			stored := mustGet(t, s, m.ID)
			if diff := cmp.Diff(want, stored); diff != "" {
				t.Errorf("stored row mismatch (-want +got):\n%s", diff)
			}
		})
	}
	stored := mustGet(t, s, other.ID)
	if diff := cmp.Diff(other, stored); diff != "" {
		t.Errorf("Update changed another row (-want +got):\n%s", diff)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)
	a := mustCreate(t, s, "Alien", "a")
	b := mustCreate(t, s, "Brazil", "b")

	got, err := s.Delete(ctx, a.ID)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("Delete returned (-want +got):\n%s", diff)
	}
	if _, err := s.Get(ctx, a.ID); !errors.Is(err, movie.ErrNotFound) {
		t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, a.ID); !errors.Is(err, movie.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}
	list := mustList(t, s, "")
	if diff := cmp.Diff([]movie.Movie{b}, list); diff != "" {
		t.Errorf("List after Delete (-want +got):\n%s", diff)
	}
}

func TestDeleteAll(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)

	tests := []struct {
		name   string
		create int
	}{
		{"empty table", 0},
		{"one row", 1},
		{"several rows", 7},
	}
	// Sequential: every step empties the shared table.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.create {
				mustCreate(t, s, "movie "+strconv.Itoa(i), "")
			}
			n, err := s.DeleteAll(ctx)
			if err != nil {
				t.Fatalf("DeleteAll: %v", err)
			}
			if n != int64(tc.create) {
				t.Errorf("DeleteAll = %d, want %d", n, tc.create)
			}
			list := mustList(t, s, "")
			if len(list) != 0 {
				t.Errorf("List after DeleteAll = %v, want empty", list)
			}
		})
	}
	// Ids are not reused after DeleteAll.
	before := mustCreate(t, s, "before", "")
	if _, err := s.DeleteAll(ctx); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	after := mustCreate(t, s, "after", "")
	if after.ID <= before.ID {
		t.Errorf("id after DeleteAll = %d, want > %d (ids must not be reused)", after.ID, before.ID)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testContext(t)
	existing := mustCreate(t, s, "Alien", "")
	deleted := mustCreate(t, s, "Gone", "")
	if _, err := s.Delete(ctx, deleted.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	ops := []struct {
		name string
		call func(id int64) error
	}{
		{"Get", func(id int64) error { _, err := s.Get(ctx, id); return err }},
		{"Update", func(id int64) error { _, err := s.Update(ctx, id, "x", "y"); return err }},
		{"Delete", func(id int64) error { _, err := s.Delete(ctx, id); return err }},
	}
	ids := []struct {
		name string
		id   int64
	}{
		{"never existed", existing.ID + 1000},
		{"deleted", deleted.ID},
		{"max int64", 1<<63 - 1},
		{"zero", 0},
		{"negative", -1},
	}
	for _, op := range ops {
		for _, id := range ids {
			t.Run(op.name+"/"+id.name, func(t *testing.T) {
				err := op.call(id.id)
				if !errors.Is(err, movie.ErrNotFound) {
					t.Fatalf("%s(%d) error = %v, want ErrNotFound", op.name, id.id, err)
				}
				var nf *movie.NotFoundError
				if !errors.As(err, &nf) {
					t.Fatalf("%s(%d) error %v (%T) is not a *movie.NotFoundError", op.name, id.id, err, err)
				}
				if nf.ID != id.id {
					t.Errorf("NotFoundError.ID = %d, want %d", nf.ID, id.id)
				}
				if errors.Is(err, movie.ErrUnavailable) {
					t.Errorf("not found must not look like an outage: %v", err)
				}
			})
		}
	}
	// The failed Update and Delete left the existing row alone.
	got := mustGet(t, s, existing.ID)
	if diff := cmp.Diff(existing, got); diff != "" {
		t.Errorf("existing row changed (-want +got):\n%s", diff)
	}
}

func TestListSearch(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	titles := []string{
		"100% pure",  // 0
		"a_b",        // 1
		`back\slash`, // 2
		"ABC",        // 3
		"axb",        // 4: matched by an unescaped "a_b"
		"100 pure",   // 5: matched by an unescaped "0%"
		"backslash",  // 6: matched if \ were dropped
		"Café",       // 7
	}
	all := make([]movie.Movie, len(titles))
	for i, title := range titles {
		all[i] = mustCreate(t, s, title, "")
	}
	pick := func(idx ...int) []movie.Movie {
		out := []movie.Movie{}
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}

	tests := []struct {
		name, query string
		want        []movie.Movie
	}{
		{"empty query lists all", "", all},
		{"percent is literal", "%", pick(0)},
		{"percent inside", "0% p", pick(0)},
		{"double percent matches nothing", "%%", pick()},
		{"underscore is literal", "_", pick(1)},
		{"underscore inside", "a_b", pick(1)},
		{"backslash is literal", `\`, pick(2)},
		{"backslash inside", `k\s`, pick(2)},
		{"escaped-looking percent is literal", `\%`, pick()},
		{"case-insensitive lower finds upper", "abc", pick(3)},
		{"case-insensitive mixed", "aBc", pick(3)},
		{"case-insensitive upper finds lower", "PURE", pick(0, 5)},
		{"substring", "slash", pick(2, 6)},
		{"unicode", "café", pick(7)},
		{"no match", "zzz", pick()},
		{"quote", "'", pick()},
		{"whole title", "100% pure", pick(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := search(testContext(t), s, tc.query)
			if err != nil {
				t.Fatalf("List(%q): %v", tc.query, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("List(%q) mismatch (-want +got):\n%s", tc.query, diff)
			}
		})
	}
}

// TestSchemaEnforcesLimits: the table's checks repeat the domain rules, so a
// writer that skips validation still cannot store a bad row. Such errors are
// not outages.
func TestSchemaEnforcesLimits(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	tests := []struct {
		name, title, description string
	}{
		{"empty title", "", ""},
		{"256 character title", strings.Repeat("é", 256), ""},
		{"10001 character description", "a", strings.Repeat("é", 10_001)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := s.Create(testContext(t), tc.title, tc.description)
			if err == nil {
				t.Fatalf("Create stored %+v, want a check violation", m)
			}
			if errors.Is(err, movie.ErrUnavailable) {
				t.Errorf("check violation reported as unavailable: %v", err)
			}
		})
	}
	got, err := search(testContext(t), s, "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("rows stored despite failed checks: %v", got)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	s := moviedb.New(db)
	ctx := testContext(t)
	if err := s.Migrate(ctx, nil); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	records := pgtest.VersionTable(t, db)
	m := mustCreate(t, s, "Alien", "kept")
	for i := range 2 {
		if err := s.Migrate(ctx, nil); err != nil {
			t.Fatalf("Migrate again (#%d): %v", i+2, err)
		}
	}
	list := mustList(t, s, "")
	if diff := cmp.Diff([]movie.Movie{m}, list); diff != "" {
		t.Errorf("rows after re-migrating (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(records, pgtest.VersionTable(t, db)); diff != "" {
		t.Errorf("goose_db_version after re-migrating (-first +now):\n%s", diff)
	}
}

// TestMigrateConcurrent: instances starting together must not fail on
// CREATE TABLE races, and each migration is recorded once; the advisory
// lock serialises them.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	const instances = 4
	stores := make([]*moviedb.Store, instances)
	dbs := make([]*gorm.DB, instances)
	for i := range stores {
		db, err := pgdb.Open(cfg)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = pgdb.Close(db) })
		dbs[i] = db
		stores[i] = moviedb.New(db)
	}
	ctx := testContext(t)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(ctx, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d Migrate: %v", i, err)
		}
	}
	if _, err := stores[0].Create(ctx, "works", ""); err != nil {
		t.Errorf("Create after concurrent Migrate: %v", err)
	}
	if diff := cmp.Diff([]int64{0, 1, 2, 3}, pgtest.AppliedVersions(t, dbs[0])); diff != "" {
		t.Errorf("goose versions (-want +got):\n%s", diff)
	}
}

// TestRestartKeepsData: a new process (new pool, new Store, Migrate at
// start) over the same database sees the rows the previous one wrote.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	cfg := pgtest.NewDatabase(t)
	ctx := testContext(t)

	db1, err := pgdb.Open(cfg)
	if err != nil {
		t.Fatalf("open first: %v", err)
	}
	first := moviedb.New(db1)
	if err := first.Migrate(ctx, nil); err != nil {
		_ = pgdb.Close(db1)
		t.Fatalf("first Migrate: %v", err)
	}
	var want []movie.Movie
	for _, title := range []string{"Alien", "Brazil", "Casablanca"} {
		m, err := first.Create(ctx, title, "about "+title)
		if err != nil {
			_ = pgdb.Close(db1)
			t.Fatalf("Create: %v", err)
		}
		want = append(want, m)
	}
	if err := pgdb.Close(db1); err != nil {
		t.Fatalf("close first pool: %v", err)
	}

	db2, err := pgdb.Open(cfg)
	if err != nil {
		t.Fatalf("open second: %v", err)
	}
	t.Cleanup(func() { _ = pgdb.Close(db2) })
	second := moviedb.New(db2)
	if err := second.Migrate(ctx, nil); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	got, err := search(ctx, second, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows after restart (-want +got):\n%s", diff)
	}
	// New ids continue after the old ones.
	m, err := second.Create(ctx, "Dune", "")
	if err != nil {
		t.Fatalf("Create after restart: %v", err)
	}
	if m.ID <= want[len(want)-1].ID {
		t.Errorf("id after restart = %d, want > %d", m.ID, want[len(want)-1].ID)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	db, err := pgdb.Open(pgtest.UnreachableConfig(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = pgdb.Close(db) })
	s := moviedb.New(db)

	ops := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Each", func(ctx context.Context) error { _, err := search(ctx, s, ""); return err }},
		{"Each search", func(ctx context.Context) error { _, err := search(ctx, s, "x"); return err }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, 1); return err }},
		{"Create", func(ctx context.Context) error { _, err := s.Create(ctx, "t", "d"); return err }},
		{"Update", func(ctx context.Context) error { _, err := s.Update(ctx, 1, "t", "d"); return err }},
		{"Delete", func(ctx context.Context) error { _, err := s.Delete(ctx, 1); return err }},
		{"DeleteAll", func(ctx context.Context) error { _, err := s.DeleteAll(ctx); return err }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			t.Parallel()
			err := op.call(testContext(t))
			if !errors.Is(err, movie.ErrUnavailable) {
				t.Fatalf("%s error = %v, want ErrUnavailable", op.name, err)
			}
			if errors.Is(err, movie.ErrNotFound) {
				t.Errorf("%s: an outage must not look like not found: %v", op.name, err)
			}
			if !strings.HasPrefix(err.Error(), "moviedb: ") {
				t.Errorf("%s error %q is not wrapped with the package name", op.name, err)
			}
		})
	}
	t.Run("Migrate", func(t *testing.T) {
		t.Parallel()
		if err := s.Migrate(testContext(t), nil); err == nil {
			t.Fatal("Migrate succeeded against a closed port")
		}
	})
}
