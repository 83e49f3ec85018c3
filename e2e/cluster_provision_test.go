//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moviestream/e2e/testinfra"
)

// TestClusterProvision runs scripts/provision-rabbitmq.sh, as root, against
// private nodes it prepares (testinfra.ScriptNode: their own directories,
// ports, HOME and cookie, and a loopback address each as their cluster
// address), never the machine's node: without a cookie it refuses; the
// seed comes up alone; the second node joins it and both see each other
// running; a second run on the member changes nothing (same VM, no join,
// no restart); a node whose cookie differs fails naming the seed and the
// cookie, and once given the right one restarts with it and joins. The
// cookie appears neither in the script's output nor in `ps`
// (arguments and environments) during any run, and the host's own cookie
// file is left as it was.
func TestClusterProvision(t *testing.T) {
	start := time.Now()
	cookie := testinfra.Secret() + testinfra.Secret()
	seed := testinfra.NewScriptNode(t, "provision-seed", "127.0.0.2")
	member := testinfra.NewScriptNode(t, "provision-member", "127.0.0.3")
	hostCookie := fileDigest(t, "/var/lib/rabbitmq/.erlang.cookie")
	nodes := seed.Node + "," + member.Node

	// No cookie: refused before anything starts.
	code, out := provision(t, clusterEnvFile(t, nodes, ""), seed, cookie)
	if code == 0 || !strings.Contains(out, "RABBITMQ_ERLANG_COOKIE is empty") {
		t.Fatalf("without a cookie: exit %d, want a failure naming RABBITMQ_ERLANG_COOKIE:\n%s", code, out)
	}
	if seed.Pid() != 0 {
		t.Errorf("without a cookie the script started the node")
	}

	env := clusterEnvFile(t, nodes, cookie)
	code, out = provision(t, env, seed, cookie, "RABBITMQ_NODE_IP="+seed.IP)
	if code != 0 || !strings.Contains(out, "is the seed of the cluster") {
		t.Fatalf("seed: exit %d:\n%s", code, out)
	}
	checkCookieFile(t, seed, cookie)

	// Two nodes side by side, the second one run of each at a time (never
	// two joins at once): the member joins while a node with another
	// cookie fails; then the member's second run while that node, given
	// the right cookie, restarts and joins.
	stranger := testinfra.NewScriptNode(t, "provision-stranger", "127.0.0.4")
	strangerNodes := seed.Node + "," + stranger.Node
	var strangerPid int
	t.Run("first runs", func(t *testing.T) {
		t.Run("the member joins the seed", func(t *testing.T) {
			t.Parallel()
			code, out := provision(t, env, member, cookie, "RABBITMQ_NODE_IP="+member.IP)
			if code != 0 || !strings.Contains(out, "joining "+member.Node+" to "+seed.Node) {
				t.Fatalf("member: exit %d, want a join:\n%s", code, out)
			}
			checkCookieFile(t, member, cookie)
		})
		t.Run("another cookie cannot join", func(t *testing.T) {
			t.Parallel()
			wrong := testinfra.Secret() + testinfra.Secret()
			code, out := provision(t, clusterEnvFile(t, strangerNodes, wrong), stranger, wrong,
				"RABBITMQ_NODE_IP="+stranger.IP)
			if code == 0 || !strings.Contains(out, "the seed "+seed.Node+" rejects this node's Erlang cookie") {
				t.Fatalf("wrong cookie: exit %d, want a failure naming the seed and the cookie:\n%s", code, out)
			}
			strangerPid = stranger.Pid()
		})
	})
	if t.Failed() {
		return
	}
	for _, n := range []*testinfra.ScriptNode{seed, member} {
		running, err := n.RunningNodes()
		if err != nil {
			t.Fatalf("%s: %v", n.Node, err)
		}
		if !slices.Contains(running, seed.Node) || !slices.Contains(running, member.Node) {
			t.Errorf("%s sees %v running, want both %s and %s", n.Node, running, seed.Node, member.Node)
		}
		if slices.Contains(running, stranger.Node) {
			t.Errorf("%s sees %s, which has another cookie, running", n.Node, stranger.Node)
		}
	}
	checkClusterListeners(t, member)

	t.Run("second runs", func(t *testing.T) {
		t.Run("on the member: a no-op", func(t *testing.T) {
			t.Parallel()
			// Its address now from the file the first run recorded.
			pid := member.Pid()
			code, out := provision(t, env, member, cookie)
			if code != 0 || !strings.Contains(out, "already a member of "+seed.Node) {
				t.Fatalf("member, second run: exit %d:\n%s", code, out)
			}
			for _, change := range []string{"joining", "restarting", "stopping", "installed RABBITMQ_ERLANG_COOKIE", "wrote ", "enabling"} {
				if strings.Contains(out, change) {
					t.Errorf("second run on the member changed something (%q):\n%s", change, out)
				}
			}
			if now := member.Pid(); now != pid || pid == 0 {
				t.Errorf("second run: the member's VM is pid %d, was %d: it restarted", now, pid)
			}
		})
		t.Run("with the right cookie: a restart and a join", func(t *testing.T) {
			t.Parallel()
			// The running node keeps the cookie it booted with: the
			// script stops it, installs the cookie, starts it, joins.
			code, out := provision(t, clusterEnvFile(t, strangerNodes, cookie), stranger, cookie)
			if code != 0 || !strings.Contains(out, "the Erlang cookie changes: stopping "+stranger.Node) ||
				!strings.Contains(out, "joining "+stranger.Node+" to "+seed.Node) {
				t.Fatalf("corrected cookie: exit %d, want a restart and a join:\n%s", code, out)
			}
			if now := stranger.Pid(); now == strangerPid || now == 0 || strangerPid == 0 {
				t.Errorf("corrected cookie: the node's VM is pid %d, was %d: want a new one", now, strangerPid)
			}
			checkCookieFile(t, stranger, cookie)
			if running, err := seed.RunningNodes(); err != nil || !slices.Contains(running, stranger.Node) {
				t.Errorf("after the corrected cookie the seed sees %v running (%v), want %s too", running, err, stranger.Node)
			}
		})
	})

	if got := fileDigest(t, "/var/lib/rabbitmq/.erlang.cookie"); got != hostCookie {
		t.Errorf("the host's /var/lib/rabbitmq/.erlang.cookie changed during the test")
	}
	t.Logf("cluster provisioning checks took %s", time.Since(start).Round(time.Second))
}

// provision runs scripts/provision-rabbitmq.sh for node n with the .env at
// envFile, and returns its exit code and combined output. The environment
// is built from scratch (the test process holds the repository's .env,
// whose values would win over envFile's). While it runs, `ps` (arguments
// and environments of every process) is sampled; the run fails the test
// when cookie shows there or in the output.
func provision(t *testing.T, envFile string, n *testinfra.ScriptNode, cookie string, extra ...string) (int, string) {
	t.Helper()
	env := []string{
		"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"ENV_FILE=" + envFile,
		"MOVIESTREAM_HOST_DIR=" + filepath.Join(n.Home, "host"),
		"MOVIESTREAM_RABBITMQ_JOIN_TIMEOUT=5",
	}
	// What `go run` needs to find its caches and modules (load_env).
	for _, k := range []string{"HOME", "GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOFLAGS", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(append(env, n.Env()...), extra...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", "provision-rabbitmq.sh"))
	cmd.Dir = repoRoot
	cmd.Env = env
	var buf bytes.Buffer
	timed := &timedLines{start: time.Now()}
	w := io.MultiWriter(&buf, timed)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("provision-rabbitmq.sh: %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var seen, samples int
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ps, err := exec.Command("ps", "axeww", "-o", "args=").Output()
			if err == nil {
				samples++
				if bytes.Contains(ps, []byte(cookie)) {
					seen++
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	wg.Wait()
	out := buf.String()
	if seen > 0 {
		t.Errorf("the cookie appeared in %d of %d ps samples during the run", seen, samples)
	}
	if strings.Contains(out, cookie) {
		t.Errorf("the cookie appears in the script's output")
	}
	t.Logf("provision %s: %s, %d ps samples, %s", n.Node, time.Since(began).Round(100*time.Millisecond), samples, lastLine(out))
	if os.Getenv("CLUSTER_PROVISION_VERBOSE") == "1" {
		t.Logf("output (seconds since start):\n%s", timed.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case ctx.Err() != nil:
		t.Fatalf("provision-rabbitmq.sh did not finish within 90s:\n%s", out)
	case errors.As(err, &exit):
		return exit.ExitCode(), out
	default:
		t.Fatalf("provision-rabbitmq.sh: %v\n%s", err, out)
	}
	return 0, ""
}

// clusterEnvFile writes a copy of the repository's .env (0600, in a temp
// dir) with RABBITMQ_CLUSTER_NODES and RABBITMQ_ERLANG_COOKIE set.
func clusterEnvFile(t *testing.T, nodes, cookie string) string {
	t.Helper()
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("read .env: %v", err)
	}
	text := string(b)
	for key, value := range map[string]string{"RABBITMQ_CLUSTER_NODES": nodes, "RABBITMQ_ERLANG_COOKIE": cookie} {
		line := regexp.MustCompile(`(?m)^` + key + `=.*$`)
		if line.MatchString(text) {
			text = line.ReplaceAllLiteralString(text, key+"="+value)
		} else {
			text += "\n" + key + "=" + value + "\n"
		}
	}
	path := filepath.Join(t.TempDir(), "cluster.env")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// checkCookieFile: the node's own cookie file holds cookie, is the rabbitmq
// user's and readable by it alone.
func checkCookieFile(t *testing.T, n *testinfra.ScriptNode, cookie string) {
	t.Helper()
	path := n.CookieFile()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("cookie file: %v", err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != cookie {
		t.Errorf("%s does not hold the cookie of .env", path)
	}
	owner := "?"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
			owner = u.Username
		}
	}
	if fi.Mode().Perm() != 0o400 || owner != "rabbitmq" {
		t.Errorf("%s: mode %o owner %s, want 0400 rabbitmq", path, fi.Mode().Perm(), owner)
	}
}

// checkClusterListeners: the node listens for AMQP on loopback and on its
// cluster address, and for distribution on its cluster address only.
func checkClusterListeners(t *testing.T, n *testinfra.ScriptNode) {
	t.Helper()
	ls, err := testinfra.Listeners("")
	if err != nil {
		t.Fatal(err)
	}
	hosts := func(port int) []string {
		var h []string
		for _, l := range testinfra.OnPort(ls, port) {
			h = append(h, l.Host)
		}
		slices.Sort(h)
		return h
	}
	if got, want := hosts(n.Port), []string{"127.0.0.1", n.IP}; !slices.Equal(got, want) {
		t.Errorf("%s: AMQP on %v, want %v", n.Node, got, want)
	}
	if got, want := hosts(n.DistPort), []string{n.IP}; !slices.Equal(got, want) {
		t.Errorf("%s: distribution on %v, want %v", n.Node, got, want)
	}
}

// fileDigest is the SHA-256 of a file, or "absent".
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "absent"
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// timedLines keeps what is written to it with the time each write came,
// in seconds since start (CLUSTER_PROVISION_VERBOSE=1: where a run spends
// its time).
type timedLines struct {
	mu    sync.Mutex
	start time.Time
	b     strings.Builder
}

func (w *timedLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line != "" {
			fmt.Fprintf(&w.b, "%6.1f %s", time.Since(w.start).Seconds(), line)
		}
	}
	return len(p), nil
}

func (w *timedLines) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
