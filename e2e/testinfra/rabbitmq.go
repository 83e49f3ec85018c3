package testinfra

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moviestream/pkg/broker"
	"moviestream/pkg/testenv"
)

// RabbitMQ is a private RabbitMQ node (name fault-<random>@localhost) with
// its own AMQP and distribution ports, data, logs, configuration, enabled
// plugins (none) and Erlang cookie, all in a temporary directory. It
// registers with the machine's epmd like any other node on it; nothing else
// is shared with the machine's broker.
type RabbitMQ struct {
	Node string
	Port int
	// Listening is when the last Start saw the AMQP port accept
	// connections: "the broker is back" for clients.
	Listening time.Time

	dir     string
	scripts string
	as      osUser
	env     []string // of the server and of rabbitmqctl
	proc    *Proc
}

// rabbitScripts finds RabbitMQ's own scripts (not Debian's wrappers in
// /usr/sbin, which switch user and write to /var/log): $RABBITMQ_SCRIPTS_DIR,
// else /usr/lib/rabbitmq/bin.
func rabbitScripts() (string, error) {
	dir := os.Getenv("RABBITMQ_SCRIPTS_DIR")
	if dir == "" {
		dir = "/usr/lib/rabbitmq/bin"
	}
	if _, err := os.Stat(filepath.Join(dir, "rabbitmq-server")); err != nil {
		return "", fmt.Errorf("rabbitmq-server not found in %s: %w", dir, err)
	}
	return dir, nil
}

// StartRabbitMQ starts a private node and waits until it is booted.
func StartRabbitMQ(tb testing.TB) *RabbitMQ {
	tb.Helper()
	r := newRabbitNode(tb, rabbitNode{})
	r.Start(tb)
	return r
}

// rabbitNode is what sets a private node apart beyond its ports and
// directory; the zero value is a stand-alone node with a random name.
type rabbitNode struct {
	name   string   // node name; empty: fault-<random>@localhost
	cookie string   // Erlang cookie shared with other nodes; empty: the VM makes its own
	conf   []string // extra rabbitmq.conf lines (cluster formation)
	label  string   // name of its process in logs; empty: "rabbitmq"
}

// newRabbitNode writes a private node's configuration into a temporary
// directory and describes its process; Start boots it.
func newRabbitNode(tb testing.TB, spec rabbitNode) *RabbitMQ {
	tb.Helper()
	scripts, err := rabbitScripts()
	if err != nil {
		Unavailable(tb, "RabbitMQ", err)
	}
	as := lookupServerUser(tb, "rabbitmq")
	dir := as.mkdirOwned(tb, "fault-rabbit-")
	r := &RabbitMQ{
		Node:    spec.name,
		Port:    testenv.FreePort(tb),
		dir:     dir,
		scripts: scripts,
		as:      as,
	}
	if r.Node == "" {
		r.Node = "fault-" + Secret()[:8] + "@localhost"
	}
	if spec.label == "" {
		spec.label = "rabbitmq"
	}
	distPort := testenv.FreePort(tb)
	if spec.cookie != "" {
		// Nodes of one cluster, and the CLI talking to them, must share
		// the cookie; the VM and the CLI read it from $HOME (below).
		as.writeFile(tb, filepath.Join(dir, ".erlang.cookie"), spec.cookie, 0o400)
	}
	// An empty rabbitmq-env.conf replaces /etc/rabbitmq/rabbitmq-env.conf,
	// which names the machine's node.
	as.writeFile(tb, filepath.Join(dir, "rabbitmq-env.conf"), "# private fault-test node: no overrides\n", 0o644)
	as.writeFile(tb, filepath.Join(dir, "enabled_plugins"), "[].\n", 0o644)
	conf := append([]string{
		"listeners.tcp.1 = 127.0.0.1:" + strconv.Itoa(r.Port),
		"log.file.level = info",
		"log.console = false",
		// Room for the fault tests; an alarm is raised on purpose only.
		"disk_free_limit.absolute = 10MB",
	}, spec.conf...)
	as.writeFile(tb, filepath.Join(dir, "rabbitmq.conf"), strings.Join(append(conf, ""), "\n"), 0o644)
	r.env = baseEnv(
		"HOME="+dir, // the node's and the CLI's Erlang cookie live here
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME="+r.Node,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(r.Port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		// Its own (empty) conf.d: the host's /etc/rabbitmq/conf.d holds the
		// shared node's listeners, which a private node must not take.
		"RABBITMQ_CONFIG_FILES="+filepath.Join(dir, "conf.d"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
		// Makes the script exec the Erlang VM instead of running it in the
		// background of a shell, so the VM is this test's direct child and
		// its parent-death signal works. Without NOTIFY_SOCKET nothing is
		// sent to systemd.
		"RUNNING_UNDER_SYSTEMD=true",
	)
	r.proc = newProc(tb, spec.label, filepath.Join(dir, "rabbitmq.log"), as.sysProcAttr, r.env,
		filepath.Join(scripts, "rabbitmq-server"))
	return r
}

// Start boots the node (again, with the same data) and waits until it
// accepts AMQP connections.
func (r *RabbitMQ) Start(tb testing.TB) time.Duration {
	tb.Helper()
	start := time.Now()
	r.proc.Start(tb)
	r.awaitBoot(tb)
	return time.Since(start)
}

// awaitBoot waits until the node's run that has just been started accepts
// AMQP connections and has finished booting.
func (r *RabbitMQ) awaitBoot(tb testing.TB) {
	tb.Helper()
	// The AMQP listener opens at the end of the boot, after queues are
	// recovered; await_startup confirms the node itself is up.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	up := Poll(90*time.Second, 100*time.Millisecond, func() bool {
		if !r.proc.Running() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if !r.proc.Running() {
		tb.Fatalf("rabbitmq exited during boot:\n%s", r.proc.LogTail(40))
	}
	if !up {
		tb.Fatalf("rabbitmq not listening on %s within 90s:\n%s", addr, r.proc.LogTail(40))
	}
	r.Listening = time.Now()
	r.Ctl(tb, "await_startup", "--timeout", "60")
}

// Stop stops the node gracefully (SIGTERM, which the node handles like
// `rabbitmqctl stop`) and waits until the VM has exited.
func (r *RabbitMQ) Stop(tb testing.TB) time.Duration {
	tb.Helper()
	_, took := r.proc.Stop(tb, syscall.SIGTERM, 60*time.Second)
	return took
}

// Kill kills the VM with SIGKILL: the broker dies without closing anything.
func (r *RabbitMQ) Kill(tb testing.TB) { tb.Helper(); r.proc.Kill(tb) }

// Freeze stops the VM (SIGSTOP): sockets stay open, nothing answers, as on
// a hung host or a network partition. Thaw resumes it.
func (r *RabbitMQ) Freeze(tb testing.TB) { tb.Helper(); r.proc.Signal(tb, syscall.SIGSTOP) }

// Thaw resumes a frozen VM.
func (r *RabbitMQ) Thaw(tb testing.TB) { tb.Helper(); r.proc.Signal(tb, syscall.SIGCONT) }

// Addr is the node's AMQP address, host:port.
func (r *RabbitMQ) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// Running reports whether the VM runs.
func (r *RabbitMQ) Running() bool { return r.proc.Running() }

// Ctl runs rabbitmqctl against this node and returns its output.
func (r *RabbitMQ) Ctl(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := r.as.run(90*time.Second, r.env, filepath.Join(r.scripts, "rabbitmqctl"), append([]string{"-n", r.Node}, args...)...)
	if err != nil {
		tb.Fatalf("rabbitmqctl: %v", err)
	}
	return out
}

// Permissions are a user's configure, write and read regular expressions on
// a vhost (RabbitMQ's set_permissions).
type Permissions struct{ Configure, Write, Read string }

// FullAccess is the administrator's: everything on the vhost.
var FullAccess = Permissions{".*", ".*", ".*"}

// ServicePermissions are the gateway's and billing's permissions on queue,
// the same as scripts/provision-rabbitmq.sh grants (docs/security.md): both
// declare queue and its DLQ and publish through the default exchange; only
// billing reads queue, and neither reads the DLQ.
func ServicePermissions(queue string) (gateway, billing Permissions) {
	q := regexp.QuoteMeta(queue)
	gateway = Permissions{Configure: "^" + q + `(\.dlq)?$`, Write: `^amq\.default$`, Read: "^$"}
	billing = gateway
	billing.Read = "^" + q + "$"
	return gateway, billing
}

// AddUser creates vhost (if new) and a user with a generated password and
// perm on it, and returns the connection settings.
func (r *RabbitMQ) AddUser(tb testing.TB, vhost, user string, perm Permissions) broker.Config {
	tb.Helper()
	cfg := broker.Config{Addrs: []string{r.Addr()}, VHost: vhost, User: user, Password: Secret(), Name: "fault-test"}
	if !slices.Contains(strings.Fields(r.Ctl(tb, "-q", "list_vhosts", "name")), vhost) {
		r.Ctl(tb, "add_vhost", vhost)
	}
	// The password goes through standard input, not the command line.
	if _, err := r.as.runInput(90*time.Second, r.env, cfg.Password+"\n", filepath.Join(r.scripts, "rabbitmqctl"),
		"-n", r.Node, "add_user", user); err != nil {
		tb.Fatalf("rabbitmqctl: %v", err)
	}
	r.Ctl(tb, "set_permissions", "-p", vhost, user, perm.Configure, perm.Write, perm.Read)
	return cfg
}

// QueueCounts are a queue's message counts as the broker reports them.
type QueueCounts struct {
	Ready, Unacked int
}

// Total is every message the queue holds.
func (q QueueCounts) Total() int { return q.Ready + q.Unacked }

// Queues lists the queues of vhost with their ready and unacknowledged
// messages (the AMQP passive declare shows only the ready ones).
func (r *RabbitMQ) Queues(tb testing.TB, vhost string) map[string]QueueCounts {
	tb.Helper()
	out := r.Ctl(tb, "list_queues", "-p", vhost, "--quiet", "--formatter", "json", "name", "messages_ready", "messages_unacknowledged")
	var rows []struct {
		Name    string `json:"name"`
		Ready   int    `json:"messages_ready"`
		Unacked int    `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rows); err != nil {
		tb.Fatalf("list_queues: %v\n%s", err, out)
	}
	qs := make(map[string]QueueCounts, len(rows))
	for _, row := range rows {
		qs[row.Name] = QueueCounts{Ready: row.Ready, Unacked: row.Unacked}
	}
	return qs
}

// SetMemoryWatermark sets vm_memory_high_watermark as a fraction of RAM. A
// tiny fraction raises the memory alarm at once, which blocks every
// publishing connection; 0.4 (the default) clears it.
func (r *RabbitMQ) SetMemoryWatermark(tb testing.TB, fraction string) {
	tb.Helper()
	r.Ctl(tb, "set_vm_memory_high_watermark", fraction)
}

// Alarms returns the node's active resource alarms, as rabbitmqctl prints
// them ("" when none).
func (r *RabbitMQ) Alarms(tb testing.TB) string {
	tb.Helper()
	out := r.Ctl(tb, "eval", "rabbit_alarm:get_alarms().")
	return strings.TrimSpace(out)
}
