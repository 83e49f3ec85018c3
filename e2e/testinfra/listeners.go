package testinfra

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Listener is one listening TCP socket, as `ss -ltnpH` shows it.
type Listener struct {
	Host    string // "127.0.0.1", "::1", "0.0.0.0", "::" (ss's "*" becomes "::")
	Port    int
	Process string // the owning program when ss can tell ("beam.smp"), else ""
}

func (l Listener) String() string {
	s := net.JoinHostPort(l.Host, strconv.Itoa(l.Port))
	if l.Process != "" {
		s += " (" + l.Process + ")"
	}
	return s
}

// Loopback reports whether the socket accepts connections from loopback
// only (127.0.0.0/8 or ::1).
func (l Listener) Loopback() bool {
	ip := net.ParseIP(l.Host)
	return ip != nil && ip.IsLoopback()
}

// AllInterfaces reports whether the socket is bound to the wildcard address.
func (l Listener) AllInterfaces() bool {
	ip := net.ParseIP(l.Host)
	return ip != nil && ip.IsUnspecified()
}

// Listeners lists the listening TCP sockets of network namespace ns (this
// process's own namespace when ns is ""), with `ss -ltnpH` (root sees
// every process).
func Listeners(ns string) ([]Listener, error) {
	args := []string{"ss", "-ltnpH"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return ParseListeners(string(out))
}

var processRe = regexp.MustCompile(`users:\(\("([^"]+)"`)

// ParseListeners reads the output of `ss -ltnH` (with or without -p): one
// socket a line, the local address in the fourth column ("127.0.0.1:5672",
// "[::]:4369", "*:3000", "127.0.0.1%lo:53").
func ParseListeners(out string) ([]Listener, error) {
	var ls []Listener
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("ss: unexpected line %q", line)
		}
		local := f[3]
		i := strings.LastIndex(local, ":")
		if i < 0 {
			return nil, fmt.Errorf("ss: no port in %q", local)
		}
		port, err := strconv.Atoi(local[i+1:])
		if err != nil {
			return nil, fmt.Errorf("ss: bad port in %q", local)
		}
		host := strings.TrimSuffix(strings.TrimPrefix(local[:i], "["), "]")
		if j := strings.IndexByte(host, '%'); j >= 0 {
			host = host[:j] // 127.0.0.1%lo: bound to a device as well
		}
		if host == "*" {
			host = "::"
		}
		l := Listener{Host: host, Port: port}
		if m := processRe.FindStringSubmatch(line); m != nil {
			l.Process = m[1]
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// OnPort returns the listeners of ls on port.
func OnPort(ls []Listener, port int) []Listener {
	var out []Listener
	for _, l := range ls {
		if l.Port == port {
			out = append(out, l)
		}
	}
	return out
}
