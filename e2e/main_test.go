//go:build e2e

// Package e2e tests the running system the way a user does: `make up`, then
// HTTP against the gateway, SQL against the tables, and PM2 against the
// processes. It shares one stack, so its tests run one after another.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"moviestream/pkg/config"
	"moviestream/pkg/pgdb"
	"moviestream/pkg/testenv"
)

var (
	gatewayURL string
	billingDB  *gorm.DB
	repoRoot   string
	envFile    string // the .env the services read
	client     = &http.Client{Timeout: 15 * time.Second}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := config.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	envFile = os.Getenv(config.EnvFileVar)
	if envFile == "" {
		envFile = config.FindEnvFile()
	}
	envFile, _ = filepath.Abs(envFile)
	repoRoot = filepath.Dir(config.FindEnvFile())
	// E2E_SKIP_UP=1 reuses a stack that is already up (faster iteration).
	if os.Getenv("E2E_SKIP_UP") != "1" {
		cmd := exec.Command("make", "-C", repoRoot, "up")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: make up failed:", err)
			return 1
		}
	}
	gatewayURL = "http://127.0.0.1:" + os.Getenv("GATEWAY_PORT")

	var env config.Reader
	db, err := pgdb.Open(pgdb.Config{
		Host: env.String("BILLING_DB_HOST"), Port: env.String("BILLING_DB_PORT"), Name: env.String("BILLING_DB_NAME"),
		User: env.String("BILLING_DB_USER"), Password: env.String("BILLING_DB_PASSWORD"), MaxOpenConns: 2,
	})
	if err == nil {
		err = env.Err()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: billing database:", err)
		return 1
	}
	defer pgdb.Close(db)
	billingDB = db
	return m.Run()
}

// response is an answer of the gateway, with helpers for its JSON body.
type response struct{ testenv.Response }

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.Body)
	}
}

// errCode returns the code of a JSON error response ("" if not one).
func (r response) errCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// do sends a request to the gateway; headers are name, value pairs.
func do(t *testing.T, method, path, contentType string, body []byte, headers ...string) response {
	t.Helper()
	return send(t, gatewayURL, method, path, contentType, body, headerOf(headers...))
}

// send sends a request to base+path with contentType ("" for none) on top
// of header.
func send(t *testing.T, base, method, path, contentType string, body []byte, header http.Header) response {
	t.Helper()
	if contentType != "" {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("Content-Type", contentType)
	}
	return response{testenv.Do(t, client, method, base+path, bytes.NewReader(body), header)}
}

// headerOf builds a header from name, value pairs.
func headerOf(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Set(pairs[i], pairs[i+1])
	}
	return h
}

func pm2(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("pm2", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pm2 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
