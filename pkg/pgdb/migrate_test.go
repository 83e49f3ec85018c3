package pgdb_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"moviestream/pkg/pgdb"
	"moviestream/pkg/pgdb/pgtest"
)

const testLock int64 = 0x7465737431 // "test1"

// migrations builds a migrations directory from file name -> content.
func migrations(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

const (
	createT = "-- +goose Up\nCREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1);\n"
	addNote = "-- +goose Up\nALTER TABLE t ADD COLUMN note text NOT NULL DEFAULT 'none';\n"
)

func migrateContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func tableExists(t *testing.T, db *gorm.DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.Raw(`SELECT to_regclass(?) IS NOT NULL`, name).Scan(&ok).Error; err != nil {
		t.Fatalf("to_regclass(%s): %v", name, err)
	}
	return ok
}

// advisoryLocks counts this database's advisory locks on key, granted or
// waited for.
func advisoryLocks(t *testing.T, db *gorm.DB, key int64, granted bool) int {
	t.Helper()
	var n int
	err := db.Raw(`SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted = ?
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND ((classid::bigint << 32) | objid::bigint) = ?`, granted, key).Scan(&n).Error
	if err != nil {
		t.Fatalf("read pg_locks: %v", err)
	}
	return n
}

// tryingLock reports whether a session of db's database has tried the
// migration lock: Migrate polls it (pg_try_advisory_lock) rather than wait
// in a statement, so a waiting instance shows as a session whose last
// query is the try.
func tryingLock(t *testing.T, db *gorm.DB) bool {
	t.Helper()
	var n int
	err := db.Raw(`SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'SELECT pg_try_advisory_lock(%'`).Scan(&n).Error
	if err != nil {
		t.Fatalf("read pg_stat_activity: %v", err)
	}
	return n > 0
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is a slog handler that keeps records for inspection.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// take returns "message version=N file=F" for each record since the last call.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for _, rec := range r.records {
		line := rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "version" || a.Key == "file" {
				line += " " + a.String()
			}
			return true
		})
		out = append(out, line)
	}
	r.records = nil
	return out
}

// TestMigrateAppliesPendingVersions: each run applies only what the
// database lacks, in order; a new column reaches rows written before it.
func TestMigrateAppliesPendingVersions(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	rec := &recorder{}
	log := slog.New(rec)
	v1 := migrations(map[string]string{"0001_create_t.sql": createT})
	v2 := migrations(map[string]string{"0001_create_t.sql": createT, "0002_add_note.sql": addNote})

	steps := []struct {
		name     string
		fsys     fstest.MapFS
		versions []int64
		logged   []string
	}{
		{"first start", v1, []int64{0, 1}, []string{"schema migration applied version=1 file=0001_create_t.sql"}},
		{"restart", v1, []int64{0, 1}, []string{}},
		{"new migration", v2, []int64{0, 1, 2}, []string{"schema migration applied version=2 file=0002_add_note.sql"}},
		{"restart after it", v2, []int64{0, 1, 2}, []string{}},
	}
	// Sequential: each step starts from the previous one's database.
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := pgdb.Migrate(migrateContext(t), db, testLock, st.fsys, log); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
			if diff := cmp.Diff(st.versions, pgtest.AppliedVersions(t, db)); diff != "" {
				t.Errorf("recorded versions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st.logged, rec.take()); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
		})
	}
	var note string
	if err := db.Raw(`SELECT note FROM t WHERE id = 1`).Scan(&note).Error; err != nil || note != "none" {
		t.Errorf("note of the row inserted by 0001 = %q, %v; want the column default", note, err)
	}
}

// TestMigrateFailureRollsBackThatMigration: a failing file leaves nothing
// behind and is not recorded; earlier files stay applied; once fixed, it
// applies at the next start.
func TestMigrateFailureRollsBackThatMigration(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	ctx := migrateContext(t)
	broken := migrations(map[string]string{
		"0001_create_t.sql": createT,
		"0002_broken.sql":   "-- +goose Up\nCREATE TABLE u (id int);\nSELECT broken syntax here;\n",
	})
	err := pgdb.Migrate(ctx, db, testLock, broken, nil)
	if err == nil {
		t.Fatal("Migrate with a broken file succeeded")
	}
	t.Logf("Migrate: %v", err)
	if !strings.Contains(err.Error(), "0002_broken.sql") {
		t.Errorf("error %q does not name the failing file", err)
	}
	if tableExists(t, db, "u") {
		t.Error("table u from the failed migration was committed")
	}
	if diff := cmp.Diff([]int64{0, 1}, pgtest.AppliedVersions(t, db)); diff != "" {
		t.Errorf("recorded versions after the failure (-want +got):\n%s", diff)
	}

	fixed := migrations(map[string]string{
		"0001_create_t.sql": createT,
		"0002_broken.sql":   "-- +goose Up\nCREATE TABLE u (id int);\n",
	})
	if err := pgdb.Migrate(ctx, db, testLock, fixed, nil); err != nil {
		t.Fatalf("Migrate after the fix: %v", err)
	}
	if !tableExists(t, db, "u") {
		t.Error("fixed migration did not create u")
	}
}

// TestMigrateNoTransaction: a file marked NO TRANSACTION can build an index
// CONCURRENTLY (impossible inside a transaction) while the lock is held.
func TestMigrateNoTransaction(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	fsys := migrations(map[string]string{
		"0001_create_t.sql": createT,
		"0002_add_note.sql": addNote,
		"0003_index_note.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" +
			"CREATE INDEX CONCURRENTLY IF NOT EXISTS t_note_idx ON t (note);\n",
	})
	if err := pgdb.Migrate(migrateContext(t), db, testLock, fsys, nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	var valid bool
	err := db.Raw(`SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('t_note_idx')`).Scan(&valid).Error
	if err != nil || !valid {
		t.Errorf("index t_note_idx valid = %v (%v), want a valid index", valid, err)
	}
	if diff := cmp.Diff([]int64{0, 1, 2, 3}, pgtest.AppliedVersions(t, db)); diff != "" {
		t.Errorf("recorded versions (-want +got):\n%s", diff)
	}
}

// TestMigrateSerialisesInstances: instances starting together over one
// database each run Migrate; the migration is not idempotent (CREATE TABLE
// without IF NOT EXISTS, an INSERT of a fixed key), so it only succeeds
// everywhere if it ran exactly once.
func TestMigrateSerialisesInstances(t *testing.T) {
	t.Parallel()
	migrateTogether(t, migrations(map[string]string{"0001_create_t.sql": createT}), []int64{0, 1})
}

// TestMigrateConcurrentIndexWithInstancesWaiting: CREATE INDEX CONCURRENTLY
// waits for every transaction that holds a snapshot. An instance waiting
// for the advisory lock inside a statement would hold one, and wait for
// the instance building the index, which waits for it: instances starting
// together on a database missing such a migration must still all finish.
func TestMigrateConcurrentIndexWithInstancesWaiting(t *testing.T) {
	t.Parallel()
	migrateTogether(t, migrations(map[string]string{
		"0001_create_t.sql": createT,
		"0002_index_note.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" +
			"CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id_idx ON t (id);\n",
	}), []int64{0, 1, 2})
}

// migrateTogether runs Migrate with fsys from several instances at once,
// each with its own pool, and checks that all succeed and that the database
// records want.
func migrateTogether(t *testing.T, fsys fstest.MapFS, want []int64) {
	t.Helper()
	cfg := pgtest.NewDatabase(t)
	const instances = 6
	dbs := make([]*gorm.DB, instances)
	for i := range dbs {
		db, err := pgdb.Open(cfg)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { _ = pgdb.Close(db) })
		dbs[i] = db
	}
	ctx := migrateContext(t)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() { errs[i] = pgdb.Migrate(ctx, db, testLock, fsys, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: Migrate: %v", i, err)
		}
	}
	if diff := cmp.Diff(want, pgtest.AppliedVersions(t, dbs[0])); diff != "" {
		t.Errorf("recorded versions (-want +got):\n%s", diff)
	}
}

// TestMigrateWaitsForTheLock: while another session holds lockKey, Migrate
// waits without touching the schema, and finishes once the lock is freed.
// It also shows that the lock taken is the key given.
func TestMigrateWaitsForTheLock(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	ctx := migrateContext(t)
	release := holdLock(t, db, testLock)

	done := make(chan error, 1)
	go func() {
		done <- pgdb.Migrate(ctx, db, testLock, migrations(map[string]string{"0001_create_t.sql": createT}), nil)
	}()
	waitFor(t, "Migrate to try the advisory lock", func() bool { return tryingLock(t, db) })
	select {
	case err := <-done:
		t.Fatalf("Migrate returned (%v) while the lock was held", err)
	default:
	}
	if tableExists(t, db, "goose_db_version") || tableExists(t, db, "t") {
		t.Fatal("schema changed while another session held the lock")
	}

	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Migrate after the lock was freed: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Migrate did not finish after the lock was freed")
	}
	if !tableExists(t, db, "t") {
		t.Error("migration not applied")
	}
	if n := advisoryLocks(t, db, testLock, true); n != 0 {
		t.Errorf("%d sessions still hold the lock after Migrate returned", n)
	}
}

// TestMigrateGivesUpWhenContextEnds: a start cancelled while waiting for the
// lock returns the cancellation, applies nothing and leaves no lock behind.
func TestMigrateGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t)
	release := holdLock(t, db, testLock)
	ctx, cancel := context.WithCancel(migrateContext(t))
	defer cancel()

	done := make(chan error, 1)
	go func() {
		done <- pgdb.Migrate(ctx, db, testLock, migrations(map[string]string{"0001_create_t.sql": createT}), nil)
	}()
	waitFor(t, "Migrate to try the advisory lock", func() bool { return tryingLock(t, db) })
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Migrate succeeded after its context was cancelled")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Migrate kept waiting after its context was cancelled")
	}
	release()
	waitFor(t, "every session to let go of the lock", func() bool {
		return advisoryLocks(t, db, testLock, true)+advisoryLocks(t, db, testLock, false) == 0
	})
	if tableExists(t, db, "t") {
		t.Error("migration applied despite the cancellation")
	}
}

// holdLock takes the advisory lock key on a connection of db's pool, as
// another instance migrating would; the returned release (or the test's
// end) frees it.
func holdLock(t *testing.T, db *gorm.DB, key int64) (release func()) {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sqlDB.Conn(t.Context())
	if err != nil {
		t.Fatalf("conn: %v", err)
	}
	if _, err := conn.ExecContext(t.Context(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatalf("take lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
				t.Errorf("release lock: %v", err)
			}
			_ = conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func TestMigrateRejects(t *testing.T) {
	t.Parallel()
	fsys := migrations(map[string]string{"0001_create_t.sql": createT})
	tests := []struct {
		name string
		db   func(testing.TB) *gorm.DB
		fsys fstest.MapFS
	}{
		{"no migrations", pgtest.Open, fstest.MapFS{"README.md": {Data: []byte("not a migration")}}},
		{"file without an Up section", pgtest.Open, migrations(map[string]string{"0001_x.sql": "CREATE TABLE x (id int);\n"})},
		{"duplicate version", pgtest.Open, migrations(map[string]string{"0001_a.sql": createT, "001_b.sql": addNote})},
		{"database unreachable", func(t testing.TB) *gorm.DB {
			db, err := pgdb.Open(pgtest.UnreachableConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pgdb.Close(db) })
			return db
		}, fsys},
		// One connection cannot both hold the lock and run goose: fail, not hang.
		{"single-connection pool", func(t testing.TB) *gorm.DB {
			cfg := pgtest.NewDatabase(t)
			cfg.MaxOpenConns = 1
			db, err := pgdb.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pgdb.Close(db) })
			return db
		}, fsys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := tc.db(t)
			err := pgdb.Migrate(migrateContext(t), db, testLock, tc.fsys, nil)
			if err == nil {
				t.Fatal("Migrate succeeded")
			}
			t.Logf("Migrate: %v", err)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Migrate hung until the deadline: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "pgdb: migrate: ") {
				t.Errorf("error %q is not wrapped with the operation", err)
			}
		})
	}
}
