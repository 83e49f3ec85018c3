//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"moviestream/pkg/config"
)

// The README promises that `make up` is idempotent and that a failed step
// stops the run with a message naming the step and the package, never a
// half-provisioned system reported as healthy.

// script runs bash CMD in the repository root and returns its exit code and
// combined output.
func script(t *testing.T, env []string, cmd string) (int, string) {
	t.Helper()
	c := exec.Command("bash", "-c", cmd)
	c.Dir = repoRoot
	c.Env = append(c.Environ(), env...)
	out, err := c.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatalf("bash -c %q: %v\n%s", cmd, err, out)
		return 0, ""
	}
}

func TestScriptInstallFailureNamesStepAndPackage(t *testing.T) {
	const pkg = "moviestream-no-such-package"
	code, out := script(t, nil, ". scripts/lib.sh && apt_install "+pkg+" && echo REACHED")
	if code == 0 || strings.Contains(out, "REACHED") {
		t.Fatalf("apt_install of a missing package went on (exit %d):\n%s", code, out)
	}
	for _, want := range []string{"error: step apt-get install failed", pkg} {
		if !strings.Contains(out, want) {
			t.Errorf("failure message lacks %q:\n%s", want, out)
		}
	}
}

func TestScriptWaitHealthyFailsForAServiceThatIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close() // nothing listens there now

	code, out := script(t, []string{"GATEWAY_PORT=" + port}, "bash scripts/wait-healthy.sh 2 gateway")
	if code == 0 {
		t.Fatalf("wait-healthy reported a stopped gateway healthy:\n%s", out)
	}
	if !strings.Contains(out, "gateway not healthy after 2 s") {
		t.Errorf("message does not name the service:\n%s", out)
	}
}

// TestMakeUpTwice: a second `make up` on a running system changes no data
// and leaves all three services healthy.
func TestMakeUpTwice(t *testing.T) {
	created := do(t, "POST", "/api/movies", "application/json",
		[]byte(`{"title":"Idempotent Up","description":"kept across make up"}`))
	if created.Status != 201 {
		t.Fatalf("create: %d %s", created.Status, created.Body)
	}
	var m struct{ ID int64 }
	created.json(t, &m)
	path := "/api/movies/" + strconv.FormatInt(m.ID, 10)
	t.Cleanup(func() { do(t, "DELETE", path, "", nil) })

	if code, out := script(t, nil, "make up"); code != 0 {
		t.Fatalf("second make up failed (exit %d):\n%s", code, out)
	}
	if code, out := script(t, nil, "bash scripts/wait-healthy.sh 5"); code != 0 {
		t.Fatalf("not healthy after the second make up:\n%s", out)
	}
	if got := do(t, "GET", path, "", nil); got.Status != 200 {
		t.Fatalf("movie created before the second make up: %d %s", got.Status, got.Body)
	}
	// PM2 runs this checkout's binaries, whatever ran before (another
	// clone's make up leaves apps that startOrRestart alone would keep).
	bin, _ := servicesRunFrom(t)
	want := map[string]string{}
	for _, svc := range []string{"gateway", "inventory", "billing"} {
		want[svc+"_app"] = filepath.Join(bin, svc)
	}
	for _, a := range pm2Apps(t) {
		if w, ok := want[a.Name]; ok && a.Env.Exec != w {
			t.Errorf("%s runs %s, want %s", a.Name, a.Env.Exec, w)
		}
	}
}

// loadEnv writes content to a temp .env, runs `load_env` of scripts/lib.sh
// on it in a bash with only PATH, HOME, the Go settings and extra in its
// environment, and returns the exit code, stderr, and the exported
// environment of a child of that bash (so only exported values count).
func loadEnv(t *testing.T, content string, extra ...string) (code int, stderr string, exported map[string]string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "test.env")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("bash", "-c", `set -euo pipefail; . scripts/lib.sh; load_env; env -0`)
	c.Dir = repoRoot
	c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "ENV_FILE=" + file}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GO") { // same build cache and toolchain as this test
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, extra...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("bash: %v", err)
	}
	exported = map[string]string{}
	for _, kv := range strings.Split(out.String(), "\x00") {
		if key, value, ok := strings.Cut(kv, "="); ok {
			exported[key] = value
		}
	}
	return code, errOut.String(), exported
}

// TestLoadEnvReadsLikeTheServices: scripts get from .env exactly what the
// services get (godotenv's rules, through config.ReadFile), tricky values
// included; nothing in a value is executed; the real environment wins,
// except for a name inherited from a parent script that read it from .env.
func TestLoadEnvReadsLikeTheServices(t *testing.T) {
	tricky, err := os.ReadFile(filepath.Join(repoRoot, "pkg/config/testdata/tricky.env"))
	if err != nil {
		t.Fatal(err)
	}
	pwned := t.TempDir()
	content := string(tricky) + "\n" +
		"PWN_BACKTICK=`touch " + pwned + "/backtick`\n" +
		"PWN_SUBST=$(touch " + pwned + "/subst)\n" +
		"PWN_DQ=\"$(touch " + pwned + "/dq) `touch " + pwned + "/dq-backtick`\"\n" +
		"PWN_SEMICOLON=x; touch " + pwned + "/semicolon\n" +
		"REAL_WINS=from file\n" +
		"INHERITED=from file\n"
	code, stderr, got := loadEnv(t, content,
		"REAL_WINS=from the real environment",
		"INHERITED=stale value of the parent script",
		"MOVIESTREAM_DOTENV_KEYS=INHERITED")
	if code != 0 {
		t.Fatalf("load_env failed (exit %d):\n%s", code, stderr)
	}

	file := filepath.Join(t.TempDir(), "same.env")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := config.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want["REAL_WINS"] = "from the real environment"
	for key, value := range want {
		if g, ok := got[key]; !ok || g != value {
			t.Errorf("%s = %q (exported %t), want %q as the services read it", key, g, ok, value)
		}
	}

	entries, err := os.ReadDir(pwned)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a value of .env was executed: it created %s", e.Name())
	}

	var fromFile []string
	for key := range want {
		if key != "REAL_WINS" {
			fromFile = append(fromFile, key)
		}
	}
	slices.Sort(fromFile)
	if got, want := got["MOVIESTREAM_DOTENV_KEYS"], strings.Join(fromFile, " "); got != want {
		t.Errorf("MOVIESTREAM_DOTENV_KEYS = %q, want %q (every key read from the file, REAL_WINS excluded)", got, want)
	}
}

// TestLoadEnvStopsOnAFileTheServicesWouldRefuse: a .env godotenv cannot
// parse stops the script with a message naming the file, before anything
// is exported.
func TestLoadEnvStopsOnAFileTheServicesWouldRefuse(t *testing.T) {
	code, stderr, got := loadEnv(t, "FIRST=1\nBROKEN=\"no closing quote\n")
	if code == 0 {
		t.Fatalf("load_env accepted an unterminated quote; exported FIRST=%q", got["FIRST"])
	}
	for _, want := range []string{"unterminated quoted value", "test.env", "error: cannot read"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message lacks %q:\n%s", want, stderr)
		}
	}
	if _, ok := got["FIRST"]; ok {
		t.Error("FIRST was exported although the file is refused")
	}
}

// servicesRunFrom returns where deploy-app.sh put what the services run:
// the checkout's bin/ and .env, or, when the services' user cannot enter
// the checkout, the copies in /var/lib/moviestream/run.
func servicesRunFrom(t *testing.T) (binDir, envFile string) {
	t.Helper()
	if exec.Command("runuser", "-u", "moviestream", "--", "test", "-x", repoRoot).Run() == nil {
		return filepath.Join(repoRoot, "bin"), filepath.Join(repoRoot, ".env")
	}
	return "/var/lib/moviestream/run/bin", "/var/lib/moviestream/run/moviestream.env"
}

// pm2App is one process of `pm2 jlist` (an app with several instances has
// one entry per process).
type pm2App struct {
	Name string `json:"name"`
	Env  struct {
		Exec   string `json:"pm_exec_path"`
		Status string `json:"status"`
	} `json:"pm2_env"`
}

// pm2Apps lists the processes of root's PM2.
func pm2Apps(t *testing.T) []pm2App {
	t.Helper()
	out, err := exec.Command("pm2", "jlist").Output()
	if err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	var apps []pm2App
	if err := json.Unmarshal(out, &apps); err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	return apps
}
