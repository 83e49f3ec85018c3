package testinfra

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/pgdb"
	"moviestream/pkg/testenv"
)

// Postgres is a private PostgreSQL cluster: initdb into a temporary
// directory, a postmaster on a free port of 127.0.0.1 with its own socket
// directory. Local (socket) connections are trusted; TCP connections need
// a password (scram-sha-256), generated at run time.
type Postgres struct {
	Port int
	// Admin is the superuser's connection to the "postgres" database.
	Admin pgdb.Config

	bin  string
	data string
	as   osUser
	proc *Proc
	db   *gorm.DB
}

// pgBinDir finds PostgreSQL's server programs: $PG_BINDIR, else the newest
// /usr/lib/postgresql/*/bin (Debian's layout), else the directory of
// pg_ctl on PATH.
func pgBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("pg_ctl")
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL server programs (initdb, pg_ctl, postgres) found: %w", err)
	}
	return filepath.Dir(p), nil
}

func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// StartPostgres creates and starts a private cluster. Everything it starts
// is stopped, and its directory removed, in Cleanup.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	bin, err := pgBinDir()
	if err != nil {
		Unavailable(tb, "PostgreSQL server programs", err)
	}
	as := lookupServerUser(tb, "postgres")
	dir := as.mkdirOwned(tb, "fault-pg-")
	p := &Postgres{
		Port: testenv.FreePort(tb),
		bin:  bin,
		data: filepath.Join(dir, "data"),
		as:   as,
	}
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		tb.Fatal(err)
	}
	as.chown(tb, sock)

	password := Secret()
	pwfile := filepath.Join(dir, "pwfile")
	as.writeFile(tb, pwfile, password+"\n", 0o600)
	if _, err := as.run(60*time.Second, baseEnv(), filepath.Join(bin, "initdb"),
		"-D", p.data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"); err != nil {
		tb.Fatalf("initdb: %v", err)
	}
	_ = os.Remove(pwfile)

	p.Admin = pgdb.Config{Host: "127.0.0.1", Port: strconv.Itoa(p.Port), Name: "postgres", User: "postgres", Password: password, MaxOpenConns: 4}
	// The postmaster runs in the foreground as a child of the test, not
	// daemonized by pg_ctl, so that it dies with a test binary that crashes
	// or times out; pg_ctl stops it (fast or immediate), as in production.
	p.proc = newProc(tb, "postgres", filepath.Join(dir, "postgres.log"), as.sysProcAttr, baseEnv(),
		filepath.Join(bin, "postgres"), "-D", p.data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(p.Port),
		"-c", "unix_socket_directories="+sock, "-c", "max_connections=50",
		"-c", "shared_buffers=32MB", "-c", "log_min_messages=warning")
	p.Start(tb)

	db, err := pgdb.Open(p.Admin)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pgdb.Close(db) })
	p.db = db
	return p
}

// Start starts the postmaster on the same port and data directory and
// waits until it accepts connections.
func (p *Postgres) Start(tb testing.TB) time.Duration {
	tb.Helper()
	start := time.Now()
	p.proc.Start(tb)
	db, err := pgdb.Open(p.Admin)
	if err != nil {
		tb.Fatal(err)
	}
	defer pgdb.Close(db)
	sqlDB, _ := db.DB()
	ready := Poll(60*time.Second, 100*time.Millisecond, func() bool {
		if !p.proc.Running() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return sqlDB.PingContext(ctx) == nil
	})
	if !p.proc.Running() {
		tb.Fatalf("postgres exited during start-up:\n%s", p.proc.LogTail(30))
	}
	if !ready {
		tb.Fatalf("postgres not accepting connections within 60s:\n%s", p.proc.LogTail(30))
	}
	return time.Since(start)
}

// Stop shuts the postmaster down with pg_ctl in mode "smart", "fast" (roll
// back and disconnect) or "immediate" (no checkpoint: crash recovery at the
// next start) and waits until it has exited.
func (p *Postgres) Stop(tb testing.TB, mode string) time.Duration {
	tb.Helper()
	start := time.Now()
	if _, err := p.as.run(60*time.Second, baseEnv(), filepath.Join(p.bin, "pg_ctl"),
		"stop", "-D", p.data, "-m", mode, "-w", "-t", "30"); err != nil {
		tb.Errorf("pg_ctl stop: %v", err)
		p.proc.Signal(tb, syscall.SIGKILL)
	}
	p.proc.Wait(tb, 30*time.Second)
	return time.Since(start)
}

// Running reports whether the postmaster runs.
func (p *Postgres) Running() bool { return p.proc.Running() }

// DB is the superuser's pool to the "postgres" database.
func (p *Postgres) DB() *gorm.DB { return p.db }

// CreateDatabase creates a login role with a generated password and a
// database it owns, and returns the role's connection settings.
func (p *Postgres) CreateDatabase(tb testing.TB, name, role string) pgdb.Config {
	tb.Helper()
	cfg := p.Admin
	cfg.Name, cfg.User, cfg.Password, cfg.MaxOpenConns = name, role, Secret(), 4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range []string{
		fmt.Sprintf(`CREATE ROLE %q LOGIN PASSWORD '%s'`, role, cfg.Password),
		fmt.Sprintf(`CREATE DATABASE %q OWNER %q`, name, role),
	} {
		if err := p.db.WithContext(ctx).Exec(stmt).Error; err != nil {
			tb.Fatalf("create database %s for %s: %v", name, role, err)
		}
	}
	return cfg
}

// Open opens cfg (a database of this cluster) for the test's own queries;
// closed in Cleanup.
func (p *Postgres) Open(tb testing.TB, cfg pgdb.Config) *gorm.DB {
	tb.Helper()
	db, err := pgdb.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pgdb.Close(db) })
	return db
}
