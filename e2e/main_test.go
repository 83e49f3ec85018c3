//go:build e2e

// Package e2e tests the running system the way a user does: `make up`, then
// HTTP against the gateway, SQL against the tables, and PM2 against the
// processes. It shares one stack, so its tests run one after another.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
)

var (
	gatewayURL string
	billingDB  *gorm.DB
	repoRoot   string
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

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

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

func do(t *testing.T, method, path, contentType string, body []byte, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, gatewayURL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func pm2(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("pm2", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pm2 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
