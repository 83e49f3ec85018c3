//go:build topology

package topology

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/pgdb"
)

// probeVar hands a probe to the copy of the test binary that runs inside a
// namespace. It holds a password: the environment is readable by root
// only, the command line by everyone.
const probeVar = "TOPOLOGY_PROBE"

// probe is one login attempt: SQL when PG is set, AMQP when AMQP is set, a
// bare TCP connection to host:port when TCP is set. Its verdict is one
// line: for SQL the first column of Query's first row, or "refused" when
// the TCP connection is refused; for AMQP "accepted", "refused" (the broker
// refused the login) or "unreachable"; for TCP "open" or "refused".
// Anything else is "error: ...".
type probe struct {
	PG    *pgdb.Config   `json:",omitempty"`
	Query string         `json:",omitempty"`
	Args  []any          `json:",omitempty"`
	AMQP  *broker.Config `json:",omitempty"`
	TCP   string         `json:",omitempty"`
}

// from returns the probe's verdict, tried from namespace ns, or from the
// host when ns is "". Inside a namespace it runs this very binary there:
// `ip netns exec NS BINARY` with the probe in probeVar.
func (p probe) from(t *testing.T, ns string) string {
	t.Helper()
	if ns == "" {
		return p.run()
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	req, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), probeVar+"="+string(req))
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe in %s: %v\n%s", ns, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// runProbe is the whole run of the binary started by from: it prints the
// verdict of the probe in req.
func runProbe(req string) int {
	var p probe
	if err := json.Unmarshal([]byte(req), &p); err != nil {
		fmt.Fprintln(os.Stderr, "topology probe:", err)
		return 2
	}
	fmt.Println(p.run())
	return 0
}

func (p probe) run() string {
	switch {
	case p.PG != nil:
		return p.query()
	case p.AMQP != nil:
		return p.login()
	case p.TCP != "":
		return p.dial()
	}
	return "error: empty probe"
}

func (p probe) dial() string {
	conn, err := net.DialTimeout("tcp", p.TCP, 5*time.Second)
	switch {
	case err == nil:
		_ = conn.Close()
		return "open"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	return "error: " + err.Error()
}

func (p probe) query() string {
	db, err := pgdb.Open(*p.PG)
	if err != nil {
		return "error: " + err.Error()
	}
	defer pgdb.Close(db)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var v string
	err = db.WithContext(ctx).Raw(p.Query, p.Args...).Row().Scan(&v)
	switch {
	case err == nil:
		return v
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	return "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
}

func (p probe) login() string {
	conn, err := amqp.DialConfig(p.AMQP.URL(p.AMQP.Addrs[0]), amqp.Config{
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "topology-probe"},
	})
	if err == nil {
		_ = conn.Close()
		return "accepted"
	}
	var amqpErr *amqp.Error
	var netErr net.Error
	switch {
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused:
		return "refused"
	case errors.As(err, &netErr):
		return "unreachable"
	}
	return "error: " + err.Error()
}

// pm2 runs the PM2 of namespace ns as the VM walkthrough does (`sudo pm2
// ARGS`), in a clean environment (nothing from .env), and returns its
// standard output.
func pm2(t *testing.T, ns string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "pm2"}, args...)...)
	home := os.Getenv("HOME")
	if home == "" {
		home = "/root"
	}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "PM2_HOME=" + filepath.Join(cfg.pm2Dir, ns)}
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pm2 %s in %s: %v\n%s%s", strings.Join(args, " "), ns, err, out, stderr.Bytes())
	}
	return out
}
