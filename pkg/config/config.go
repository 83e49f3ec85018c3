// Package config reads a service's settings from the environment, after
// loading the repository's .env file when there is one. A variable set in the
// real environment always wins over the file, so PM2, systemd or a test can
// override any value without editing .env.
//
// Reading is accumulative: every getter records what was missing or malformed
// and Err reports all of it at once, so an operator fixes .env in one pass
// instead of one restart per key.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
)

// EnvFileVar names the variable that points at the .env file to load. Without
// it, Load looks for .env in the working directory and its parents.
const EnvFileVar = "ENV_FILE"

// Load reads the .env file into the process environment without overriding
// variables that are already set. A missing file is not an error: production
// hosts may set everything in the real environment.
func Load() error {
	path := os.Getenv(EnvFileVar)
	if path == "" {
		path = FindEnvFile()
		if path == "" {
			return nil
		}
	}
	values, err := ReadFile(path)
	if err != nil {
		return err
	}
	for key, value := range values {
		if _, set := os.LookupEnv(key); set {
			continue
		}
		if err := os.Setenv(key, value); err != nil {
			return fmt.Errorf("config: load %s: %s: %w", path, key, err)
		}
	}
	return nil
}

// ReadFile parses a .env file with godotenv's rules and returns its
// variables without touching the environment. It is the only .env parser of
// the repository: Load uses it for the services, and the dotenv command
// (cmd/dotenv) uses it for scripts/lib.sh, so a value never reads one way in
// a service and another way in a script. The rules, in short: "export " and
// blanks around the key are dropped; 'single quotes' keep everything as
// written; "double quotes" turn \n into a newline, drop other backslashes
// and expand ${VAR}; an unquoted value ends at " #", loses its surrounding
// blanks, and expands $VAR and ${VAR}. Expansion sees only the variables
// defined above it in the same file, never the process environment, and
// nothing is ever executed: `cmd` and $(cmd) stay text.
func ReadFile(path string) (map[string]string, error) {
	values, err := godotenv.Read(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return values, nil
}

// FindEnvFile returns the nearest .env in the working directory or one of its
// parents, or "" when there is none. Tests run in a package directory deep in
// the tree and still find the repository's file this way.
func FindEnvFile() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		candidate := filepath.Join(dir, ".env")
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Reader collects problems while a service reads its settings.
type Reader struct {
	missing []string
	bad     []string
}

// String returns a required variable; an empty value counts as missing.
func (r *Reader) String(key string) string {
	v, ok := os.LookupEnv(key)
	if !ok || strings.TrimSpace(v) == "" {
		r.missing = append(r.missing, key)
		return ""
	}
	return v
}

// Optional returns the variable's value, or def when it is unset.
func (r *Reader) Optional(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// Int returns a required positive integer.
func (r *Reader) Int(key string) int {
	v := r.String(key)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		r.bad = append(r.bad, fmt.Sprintf("%s=%q is not a positive integer", key, v))
		return 0
	}
	return n
}

// IntRange returns a required integer between lo and hi inclusive. Use it
// wherever a value out of range would be silently misread further down (an
// AMQP prefetch count is 16 bits: 65536 wraps to 0, "unlimited").
func (r *Reader) IntRange(key string, lo, hi int) int {
	v := r.String(key)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.bad = append(r.bad, fmt.Sprintf("%s=%q is not an integer in %d..%d", key, v, lo, hi))
		return 0
	}
	return n
}

// Port returns a required TCP port number, 1..65535.
func (r *Reader) Port(key string) int {
	return r.IntRange(key, 1, 65535)
}

// Duration returns a required positive duration such as "5s" or "250ms".
func (r *Reader) Duration(key string) time.Duration {
	v := r.String(key)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.bad = append(r.bad, fmt.Sprintf("%s=%q is not a positive duration", key, v))
		return 0
	}
	return d
}

// Invalid records a problem that no single getter can see, such as one
// setting larger than another; Err reports it with the others. Name the
// keys and their values in the message.
func (r *Reader) Invalid(format string, args ...any) {
	r.bad = append(r.bad, fmt.Sprintf(format, args...))
}

// List returns a comma-separated optional variable as its non-empty items.
func (r *Reader) List(key string) []string {
	var out []string
	for _, item := range strings.Split(r.Optional(key, ""), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Hosts returns a required comma-separated list of IP addresses, the
// interfaces a server binds to (BIND variables): "127.0.0.1,192.168.56.11".
// "0.0.0.0" or "::" means every interface; a host name is refused, so that
// what a service binds to is exactly what the file says.
func (r *Reader) Hosts(key string) []string {
	if r.String(key) == "" {
		return nil
	}
	hosts := r.List(key)
	for _, h := range hosts {
		if net.ParseIP(h) == nil {
			r.bad = append(r.bad, fmt.Sprintf("%s: %q is not an IP address", key, h))
			return nil
		}
	}
	if len(hosts) == 0 {
		r.missing = append(r.missing, key)
	}
	return hosts
}

// Addrs returns a required comma-separated list of listen addresses, each
// IP:port: "127.0.0.1:9111,192.168.56.11:9111".
func (r *Reader) Addrs(key string) []string {
	return r.hostPorts(key, "IP:port", func(host string) bool { return net.ParseIP(host) != nil })
}

// Endpoints returns a required comma-separated list of addresses to dial,
// each host:port where host is an IP address or a name: the broker nodes of
// RABBITMQ_ADDRS, "10.0.0.1:5672,rabbit-2:5672".
func (r *Reader) Endpoints(key string) []string {
	return r.hostPorts(key, "host:port", func(host string) bool { return host != "" })
}

func (r *Reader) hostPorts(key, form string, validHost func(string) bool) []string {
	if r.String(key) == "" {
		return nil
	}
	addrs := r.List(key)
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || !validHost(host) || perr != nil || n < 1 || n > 65535 {
			r.bad = append(r.bad, fmt.Sprintf("%s: %q is not %s", key, a, form))
			return nil
		}
	}
	if len(addrs) == 0 {
		r.missing = append(r.missing, key)
	}
	return addrs
}

// ErrInvalid is wrapped by every error Err returns.
var ErrInvalid = errors.New("invalid configuration")

// Err reports every missing or malformed variable seen so far, or nil.
func (r *Reader) Err() error {
	if len(r.missing) == 0 && len(r.bad) == 0 {
		return nil
	}
	var parts []string
	if len(r.missing) > 0 {
		parts = append(parts, "missing required variable(s): "+strings.Join(r.missing, ", "))
	}
	parts = append(parts, r.bad...)
	return fmt.Errorf("config: %w: %s", ErrInvalid, strings.Join(parts, "; "))
}
