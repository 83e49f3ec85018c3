package testinfra

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moviestream/pkg/broker"
)

// RabbitCluster is a private RabbitMQ cluster: n private nodes (see
// RabbitMQ), each with its own name, AMQP and distribution ports and
// directory, sharing a generated Erlang cookie. The first node boots alone;
// the others join it at their first boot through classic peer discovery
// (cluster_formation.classic_config in their rabbitmq.conf), so forming
// takes no stop_app/join_cluster/start_app round trips. A node that is
// stopped or killed and started again rejoins from its own data. Like a
// single private node it never touches the machine's broker.
type RabbitCluster struct {
	Nodes []*RabbitMQ
	// Formed is how long the cluster took from the first node's start
	// until every node saw all of them running.
	Formed time.Duration
}

// ErrNoLeader means no live node names a running leader for the queue:
// it is electing one, or it does not exist.
var ErrNoLeader = errors.New("queue has no running leader")

// StartRabbitCluster starts an n-node cluster and waits until every node
// runs and sees all the others.
func StartRabbitCluster(tb testing.TB, n int) *RabbitCluster {
	tb.Helper()
	if n < 2 {
		tb.Fatalf("a cluster has at least 2 nodes, not %d", n)
	}
	start := time.Now()
	run := Secret()[:6]
	cookie := Secret() + Secret()
	c := &RabbitCluster{}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("fault-%s-%d@localhost", run, i+1)
	}
	for i, name := range names {
		spec := rabbitNode{name: name, cookie: cookie, label: fmt.Sprintf("rabbitmq-%d", i+1)}
		if i > 0 {
			// Peer discovery runs on a node's first boot only (an empty
			// data directory): it joins the first node, which is already up.
			spec.conf = []string{
				"cluster_formation.peer_discovery_backend = classic_config",
				"cluster_formation.classic_config.nodes.1 = " + names[0],
			}
		}
		c.Nodes = append(c.Nodes, newRabbitNode(tb, spec))
	}
	// Each node's own log (its file, not the process output, which holds
	// little but the banner) says what the cluster did: shown on failure,
	// before the directories go.
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, r := range c.Nodes {
				tb.Logf("--- last lines of %s's log (boot steps left out) ---\n%s", r.Node, r.NodeLogTail(60, "Running boot step"))
			}
		}
	})
	c.Nodes[0].Start(tb)
	// The others boot side by side: each joins the first node.
	for _, r := range c.Nodes[1:] {
		r.proc.Start(tb)
	}
	for _, r := range c.Nodes[1:] {
		r.awaitBoot(tb)
	}
	c.WaitFormed(tb, 60*time.Second)
	c.Formed = time.Since(start)
	return c
}

// Addrs is the AMQP addresses of the nodes, host:port, comma-separated, as
// RABBITMQ_ADDRS takes them.
func (c *RabbitCluster) Addrs() string {
	return strings.Join(c.AddrList(), ",")
}

// AddrList is the AMQP addresses of the nodes, host:port.
func (c *RabbitCluster) AddrList() []string {
	addrs := make([]string, len(c.Nodes))
	for i, r := range c.Nodes {
		addrs[i] = r.Addr()
	}
	return addrs
}

// Node returns the node named name, or nil.
func (c *RabbitCluster) Node(name string) *RabbitMQ {
	for _, r := range c.Nodes {
		if r.Node == name {
			return r
		}
	}
	return nil
}

// Live returns a node whose VM runs, preferring the first; it fails the
// test when none does.
func (c *RabbitCluster) Live(tb testing.TB) *RabbitMQ {
	tb.Helper()
	for _, r := range c.Nodes {
		if r.Running() {
			return r
		}
	}
	tb.Fatalf("no node of the cluster runs")
	return nil
}

// Ctl runs rabbitmqctl against a live node: users, vhosts and queues are
// the cluster's, any member answers for them.
func (c *RabbitCluster) Ctl(tb testing.TB, args ...string) string {
	tb.Helper()
	return c.Live(tb).Ctl(tb, args...)
}

// AddUser creates vhost (if new) and a user on the cluster (see
// RabbitMQ.AddUser) and returns settings that name every node.
func (c *RabbitCluster) AddUser(tb testing.TB, vhost, user string, perm Permissions) broker.Config {
	tb.Helper()
	cfg := c.Live(tb).AddUser(tb, vhost, user, perm)
	cfg.Addrs = c.AddrList()
	return cfg
}

// NodeLogTail returns the last n lines of the node's own log file,
// leaving out lines that contain any of skip.
func (r *RabbitMQ) NodeLogTail(n int, skip ...string) string {
	b, err := os.ReadFile(filepath.Join(r.dir, "log", r.Node+".log"))
	if err != nil {
		return err.Error()
	}
	lines := slices.DeleteFunc(strings.Split(strings.TrimRight(string(b), "\n"), "\n"), func(line string) bool {
		return slices.ContainsFunc(skip, func(s string) bool { return strings.Contains(line, s) })
	})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tryCtl is Ctl that returns the failure instead of failing the test: the
// node may be going down while it is asked.
func (r *RabbitMQ) tryCtl(timeout time.Duration, args ...string) (string, error) {
	return r.as.run(timeout, r.env, filepath.Join(r.scripts, "rabbitmqctl"), append([]string{"-n", r.Node}, args...)...)
}

// running returns the nodes that node r sees running in the cluster.
func (r *RabbitMQ) running() ([]string, error) {
	out, err := r.tryCtl(30*time.Second, "cluster_status", "--quiet", "--formatter", "json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(jsonPart(out)), &st); err != nil {
		return nil, fmt.Errorf("cluster_status: %w\n%s", err, out)
	}
	return st.Running, nil
}

// WaitFormed waits until every node runs and each sees all of them
// running, and returns how long that took.
func (c *RabbitCluster) WaitFormed(tb testing.TB, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	var last string
	ok := Poll(timeout, 500*time.Millisecond, func() bool {
		for _, r := range c.Nodes {
			if !r.Running() {
				last = r.Node + " is not running"
				return false
			}
			seen, err := r.running()
			if err != nil {
				last = err.Error()
				return false
			}
			for _, other := range c.Nodes {
				if !slices.Contains(seen, other.Node) {
					last = fmt.Sprintf("%s sees %v running", r.Node, seen)
					return false
				}
			}
		}
		return true
	})
	if !ok {
		tb.Fatalf("cluster not formed within %s: %s", timeout, last)
	}
	return time.Since(start)
}

// Replicas are where a quorum queue's replicas are, as a member reports it.
type Replicas struct {
	Leader  string   `json:"leader"`
	Members []string `json:"members"`
	Online  []string `json:"online"`
}

// Replicas asks a live node where queue's replicas and leader are.
func (c *RabbitCluster) Replicas(tb testing.TB, vhost, queue string) (Replicas, error) {
	tb.Helper()
	var errs []error
	for _, r := range c.Nodes {
		if !r.Running() {
			continue
		}
		out, err := r.tryCtl(30*time.Second, "list_queues", "-p", vhost, "--quiet", "--formatter", "json",
			"name", "leader", "members", "online")
		if err != nil {
			errs = append(errs, err)
			continue // this node may be stopping: ask another
		}
		var rows []struct {
			Name string `json:"name"`
			Replicas
		}
		if err := json.Unmarshal([]byte(jsonPart(out)), &rows); err != nil {
			return Replicas{}, fmt.Errorf("list_queues: %w\n%s", err, out)
		}
		for _, row := range rows {
			if row.Name == queue {
				return row.Replicas, nil
			}
		}
		return Replicas{}, fmt.Errorf("queue %q not in vhost %q (%d queues)", queue, vhost, len(rows))
	}
	return Replicas{}, fmt.Errorf("no live node answered: %w", errors.Join(errs...))
}

// Leader returns the running node that holds queue's leader.
func (c *RabbitCluster) Leader(tb testing.TB, vhost, queue string) (*RabbitMQ, error) {
	tb.Helper()
	rep, err := c.Replicas(tb, vhost, queue)
	if err != nil {
		return nil, err
	}
	r := c.Node(rep.Leader)
	if r == nil || !r.Running() {
		return nil, fmt.Errorf("%s: leader %q: %w", queue, rep.Leader, ErrNoLeader)
	}
	return r, nil
}

// WaitReplicas waits until queue has a leader on a running node and n
// replicas online, and returns what the cluster reports then.
func (c *RabbitCluster) WaitReplicas(tb testing.TB, vhost, queue string, n int, timeout time.Duration) Replicas {
	tb.Helper()
	var (
		rep  Replicas
		last error
	)
	ok := Poll(timeout, 500*time.Millisecond, func() bool {
		var err error
		rep, err = c.Replicas(tb, vhost, queue)
		if err != nil {
			last = err
			return false
		}
		if r := c.Node(rep.Leader); r == nil || !r.Running() {
			last = fmt.Errorf("leader %q: %w", rep.Leader, ErrNoLeader)
			return false
		}
		if len(rep.Online) < n {
			last = fmt.Errorf("%d of %d replicas online: %v", len(rep.Online), n, rep.Online)
			return false
		}
		return true
	})
	if !ok {
		tb.Fatalf("%s: not %d replicas online with a leader within %s: %v", queue, n, timeout, last)
	}
	return rep
}

// jsonPart drops what the CLI may print before its JSON (warnings about
// the environment): the output from the first '{' or '['.
func jsonPart(out string) string {
	if i := strings.IndexAny(out, "[{"); i > 0 {
		return out[i:]
	}
	return out
}
