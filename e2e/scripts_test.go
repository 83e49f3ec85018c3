//go:build e2e

package e2e

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
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
}
