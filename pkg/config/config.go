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
	if err := godotenv.Load(path); err != nil {
		return fmt.Errorf("config: load %s: %w", path, err)
	}
	return nil
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
