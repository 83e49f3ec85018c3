package testinfra

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Services are the repository's service binaries, built once per test run.
var Services = []string{"gateway", "inventory", "billing"}

// BuildServices runs `go build` for the named services (every one of
// Services when none is named) of the repository at root into dir, one
// binary per service, named after it. It is meant for TestMain: build once,
// run many times.
func BuildServices(root, dir string, race bool, names ...string) error {
	if len(names) == 0 {
		names = Services
	}
	pkgs := make([]string, len(names))
	for i, s := range names {
		pkgs[i] = "./services/" + s
	}
	return Build(root, dir, race, nil, pkgs...)
}

// Build runs `go build` with the build tags given (none: a normal build)
// for the main packages pkgs (relative to root, e.g.
// "./services/billing/cmd/dlq") into dir, created if needed, one binary
// per package, named after its last path element. A build with tags goes
// into a directory of its own, so that its binaries keep their names:
// e.g. billing built with -tags faultinject into dir/faultinject/billing.
func Build(root, dir string, race bool, tags []string, pkgs ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if race {
		args = append(args, "-race")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %v: %w\n%s", args, err, out)
	}
	return nil
}

// StartService runs a built service binary with the test's environment,
// ENV_FILE pointing at the repository's .env, and env on top: a variable
// set in the real environment wins over .env, so env points the service at
// private instances and ports while every other setting comes from .env.
// The process is killed in Cleanup if it still runs.
func StartService(tb testing.TB, binDir, name, envFile string, env map[string]string) *Proc {
	tb.Helper()
	vars := append(os.Environ(), "ENV_FILE="+envFile)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vars = append(vars, k+"="+env[k]) // the last of duplicate keys wins
	}
	logPath := filepath.Join(tb.TempDir(), name+".log")
	attr := func() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
	p := newProc(tb, name, logPath, attr, vars, filepath.Join(binDir, name))
	p.Start(tb)
	return p
}
