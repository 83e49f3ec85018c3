package testinfra

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moviestream/pkg/testenv"
)

// ScriptNode is a private RabbitMQ node left to scripts/provision-rabbitmq.sh:
// the test only prepares its directory (configuration, data, logs, its own
// HOME and so its own Erlang cookie) and free ports, and the script starts,
// configures and clusters it as it would a broker host's node. Its name is
// a long name on a loopback address of its own (name@127.0.0.x), which is
// then its cluster address: the script puts AMQP and Erlang distribution
// there, as on a broker host. It never touches the machine's node, its
// /etc/rabbitmq or its /var/lib/rabbitmq/.erlang.cookie.
//
// The script starts the node detached (rabbitmq-server -detached), so it is
// not a child of the test: Cleanup stops the VM its pid file names.
type ScriptNode struct {
	Node     string // name@IP
	IP       string // its cluster address (127.0.0.x)
	Port     int    // AMQP
	MgmtPort int    // management plugin
	PromPort int    // rabbitmq_prometheus plugin
	DistPort int    // Erlang distribution
	Home     string // its HOME: the Erlang cookie is Home/.erlang.cookie

	scripts string
	as      osUser
}

// NewScriptNode prepares a private node named name@ip; the script starts
// it. It needs root, as the script does.
func NewScriptNode(tb testing.TB, name, ip string) *ScriptNode {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "root (scripts/provision-rabbitmq.sh)", fmt.Errorf("running as uid %d", os.Geteuid()))
	}
	scripts, err := rabbitScripts()
	if err != nil {
		Unavailable(tb, "RabbitMQ", err)
	}
	as := lookupServerUser(tb, "rabbitmq")
	dir := as.mkdirOwned(tb, "cluster-provision-")
	// Traversable by the rabbitmq user, which runs the node and the CLI.
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatalf("chmod %s: %v", dir, err)
	}
	n := &ScriptNode{
		Node:     name + "@" + ip,
		IP:       ip,
		Port:     testenv.FreePort(tb),
		MgmtPort: testenv.FreePort(tb),
		PromPort: testenv.FreePort(tb),
		DistPort: testenv.FreePort(tb),
		Home:     dir,
		scripts:  scripts,
		as:       as,
	}
	for _, sub := range []string{"conf.d", "mnesia", "log"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o755); err != nil {
			tb.Fatalf("mkdir %s: %v", p, err)
		}
		as.chown(tb, p)
	}
	// An empty rabbitmq-env.conf replaces /etc/rabbitmq/rabbitmq-env.conf.
	as.writeFile(tb, filepath.Join(dir, "rabbitmq-env.conf"), "# private cluster-provision node: no overrides\n", 0o644)
	as.writeFile(tb, filepath.Join(dir, "enabled_plugins"), "[].\n", 0o644)
	// RabbitMQ's defaults as on a fresh host; the script writes the
	// listeners into conf.d.
	as.writeFile(tb, filepath.Join(dir, "rabbitmq.conf"), strings.Join([]string{
		"log.file.level = info",
		"log.console = false",
		"disk_free_limit.absolute = 10MB",
		"",
	}, "\n"), 0o644)
	tb.Cleanup(func() { n.stop(tb) })
	return n
}

// Env is what points the script and the CLI tools at this node: RabbitMQ's
// own variables, the ports the script reads from the environment before
// .env, and MOVIESTREAM_RABBITMQ_HOME (the node's own cookie).
func (n *ScriptNode) Env() []string {
	return []string{
		"RABBITMQ_NODENAME=" + n.Node,
		// A host part that is an address needs long names, for the node
		// and for every CLI call.
		"RABBITMQ_USE_LONGNAME=true",
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(n.Home, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(n.Home, "rabbitmq.conf"),
		"RABBITMQ_CONFIG_FILES=" + filepath.Join(n.Home, "conf.d"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(n.Home, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(n.Home, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(n.Home, "log"),
		"RABBITMQ_PID_FILE=" + n.pidFile(),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(n.DistPort),
		"RABBITMQ_PORT=" + strconv.Itoa(n.Port),
		"RABBITMQ_MANAGEMENT_PORT=" + strconv.Itoa(n.MgmtPort),
		"RABBITMQ_PROMETHEUS_PORT=" + strconv.Itoa(n.PromPort),
		"MOVIESTREAM_RABBITMQ_HOME=" + n.Home,
	}
}

func (n *ScriptNode) pidFile() string { return filepath.Join(n.Home, "rabbitmq.pid") }

// Pid is the node's Erlang VM as its pid file names it, 0 when none runs.
func (n *ScriptNode) Pid() int {
	b, err := os.ReadFile(n.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// CookieFile is the node's own Erlang cookie file.
func (n *ScriptNode) CookieFile() string { return filepath.Join(n.Home, ".erlang.cookie") }

// Ctl runs rabbitmqctl against this node as the rabbitmq user with the
// node's HOME (its cookie), and returns its output.
func (n *ScriptNode) Ctl(args ...string) (string, error) {
	env := baseEnv(append(n.Env(), "HOME="+n.Home)...)
	return n.as.run(60*time.Second, env, filepath.Join(n.scripts, "rabbitmqctl"), args...)
}

// RunningNodes is the nodes this node sees running in its cluster.
func (n *ScriptNode) RunningNodes() ([]string, error) {
	out, err := n.Ctl("-q", "eval", "rabbit_nodes:all_running().")
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, f := range strings.Split(strings.Trim(strings.Join(strings.Fields(out), ""), "[]"), ",") {
		if f = strings.Trim(f, "'"); f != "" {
			nodes = append(nodes, f)
		}
	}
	return nodes, nil
}

// stop stops the node if it runs: SIGTERM, which the node handles like
// `rabbitmqctl stop` without the CLI's start-up time, then SIGKILL.
func (n *ScriptNode) stop(tb testing.TB) {
	pid := n.Pid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !Poll(30*time.Second, 100*time.Millisecond, func() bool { return syscall.Kill(pid, 0) != nil }) {
		tb.Logf("%s: still running 30s after SIGTERM: SIGKILL", n.Node)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
