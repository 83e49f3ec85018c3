// Package testinfra starts private PostgreSQL and RabbitMQ instances and the
// service binaries for fault tests, so a test can stop, kill and restart
// them without touching the machine's shared services (PostgreSQL on 5432,
// RabbitMQ on 5672) or the stack that `make up` runs (ports 3000, 8080,
// 8081). Every instance listens on free ports on 127.0.0.1, keeps its data
// in its own temporary directory, and is killed in t.Cleanup, even when the
// test fails; each server runs as a direct child of the test process with a
// parent-death signal, so a test binary that dies leaves nothing behind.
//
// Credentials are generated at run time and never written to tracked files.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

// Secret returns a random throwaway password for a private instance.
func Secret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Poll calls cond every interval until it returns true (true) or timeout
// passes (false). It is the one way these tests wait for a condition.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// Unavailable stops the test because a tool it needs is missing: a skip on
// a developer's machine, a failure in CI (CI=true), where nothing skips.
func Unavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	testenv.Unavailable(tb, what, err)
}

// osUser is the account a server runs as. PostgreSQL refuses to run as
// root; RabbitMQ runs as its own account as it does when installed. When
// the tests do not run as root, servers run as the current user.
type osUser struct {
	name string
	cred *syscall.Credential // nil: the current user
	uid  int
	gid  int
}

func lookupServerUser(tb testing.TB, name string) osUser {
	tb.Helper()
	if os.Geteuid() != 0 {
		return osUser{name: "current user", uid: os.Getuid(), gid: os.Getgid()}
	}
	u, err := user.Lookup(name)
	if err != nil {
		Unavailable(tb, "OS user "+name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return osUser{name: name, uid: uid, gid: gid, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// mkdirOwned creates a temporary directory owned by u, removed in Cleanup.
func (u osUser) mkdirOwned(tb testing.TB, pattern string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	u.chown(tb, dir)
	return dir
}

func (u osUser) chown(tb testing.TB, path string) {
	tb.Helper()
	if u.cred == nil {
		return
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		tb.Fatalf("chown %s: %v", path, err)
	}
}

// writeFile writes a file owned by u with mode perm.
func (u osUser) writeFile(tb testing.TB, path, content string, perm os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
	u.chown(tb, path)
}

// sysProcAttr runs a child as u, dying with the test process.
func (u osUser) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: u.cred, Pdeathsig: syscall.SIGKILL}
}

// run executes a short-lived tool as u, bounded by timeout, and returns its
// combined output; a failure or timeout is an error that includes it.
func (u osUser) run(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	return u.runInput(timeout, env, "", name, args...)
}

// runInput is run with stdin as the tool's standard input.
func (u osUser) runInput(timeout time.Duration, env []string, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = u.sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w (after %s)\n%s", name, strings.Join(args, " "), err, timeout, out)
	}
	return string(out), nil
}

// baseEnv is the minimal environment of a server or tool.
func baseEnv(extra ...string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	return append(env, extra...)
}
