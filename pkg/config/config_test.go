package config_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/joho/godotenv"

	"moviestream/pkg/config"
)

func TestReaderReportsEveryMissingKeyByName(t *testing.T) {
	t.Setenv("CFG_TEST_PRESENT", "x")
	t.Setenv("CFG_TEST_EMPTY", "  ")
	var r config.Reader
	_ = r.String("CFG_TEST_PRESENT")
	_ = r.String("CFG_TEST_MISSING_A")
	_ = r.String("CFG_TEST_EMPTY")
	_ = r.Int("CFG_TEST_MISSING_B")
	err := r.Err()
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Err() = %v, want ErrInvalid", err)
	}
	for _, key := range []string{"CFG_TEST_MISSING_A", "CFG_TEST_EMPTY", "CFG_TEST_MISSING_B"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	if strings.Contains(err.Error(), "CFG_TEST_PRESENT") {
		t.Errorf("error %q names a key that is set", err)
	}
}

func TestReaderTypedValues(t *testing.T) {
	t.Setenv("CFG_TEST_INT", "8080")
	t.Setenv("CFG_TEST_BADINT", "80a")
	t.Setenv("CFG_TEST_DUR", "250ms")
	t.Setenv("CFG_TEST_BADDUR", "-1s")
	t.Setenv("CFG_TEST_LIST", " 127.0.0.1, ,10.0.0.1 ")
	var r config.Reader
	if got := r.Int("CFG_TEST_INT"); got != 8080 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Duration("CFG_TEST_DUR"); got != 250*time.Millisecond {
		t.Errorf("Duration = %s", got)
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "10.0.0.1"}, r.List("CFG_TEST_LIST")); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	r.Int("CFG_TEST_BADINT")
	r.Duration("CFG_TEST_BADDUR")
	err := r.Err()
	for _, key := range []string{"CFG_TEST_BADINT", "CFG_TEST_BADDUR"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

func TestLoadRealEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "test.env")
	if err := os.WriteFile(file, []byte("CFG_TEST_FROM_FILE=file\nCFG_TEST_OVERRIDDEN=file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvFileVar, file)
	t.Setenv("CFG_TEST_OVERRIDDEN", "real")
	t.Cleanup(func() { os.Unsetenv("CFG_TEST_FROM_FILE") })
	if err := config.Load(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := os.Getenv("CFG_TEST_FROM_FILE"); got != "file" {
		t.Errorf("CFG_TEST_FROM_FILE = %q, want value from file", got)
	}
	if got := os.Getenv("CFG_TEST_OVERRIDDEN"); got != "real" {
		t.Errorf("CFG_TEST_OVERRIDDEN = %q, the real environment must win", got)
	}
}

func TestLoadMissingExplicitFileFails(t *testing.T) {
	t.Setenv(config.EnvFileVar, filepath.Join(t.TempDir(), "absent.env"))
	if err := config.Load(); err == nil {
		t.Fatal("Load succeeded with ENV_FILE pointing at no file")
	}
}

// TestNoSecretOutsideEnvFile enforces that credentials live only in .env:
// the value of every secret-looking key must not appear in any other
// tracked file.
func TestNoSecretOutsideEnvFile(t *testing.T) {
	envFile := config.FindEnvFile()
	if envFile == "" {
		t.Fatal("no .env found above the working directory")
	}
	root := filepath.Dir(envFile)
	values, err := godotenv.Read(envFile)
	if err != nil {
		t.Fatalf("read %s: %v", envFile, err)
	}
	secrets := map[string]string{}
	for k, v := range values {
		if strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN") || strings.HasSuffix(k, "_KEY") || strings.Contains(k, "COOKIE") {
			if v == "" && strings.Contains(k, "COOKIE") {
				continue // no cluster configured (RABBITMQ_CLUSTER_NODES empty)
			}
			if len(v) < 8 {
				t.Errorf("%s is shorter than 8 characters; use a real secret", k)
				continue
			}
			secrets[k] = v
		}
	}
	if len(secrets) == 0 {
		t.Fatal("no secrets found in .env; the check would prove nothing")
	}

	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	checked := 0
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" || name == ".env" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue // deleted in the work tree
		}
		checked++
		for key, secret := range secrets {
			if strings.Contains(string(data), secret) {
				t.Errorf("%s contains the value of %s from .env", name, key)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no tracked files checked")
	}
}

func TestReaderIntRange(t *testing.T) {
	tests := []struct {
		name, value string
		read        func(*config.Reader, string) int
		want        int
		wantErr     string // "" when the value is accepted
	}{
		{"in range", "2000", prefetch, 2000, ""},
		{"lowest", "1", prefetch, 1, ""},
		{"highest", "65535", prefetch, 65535, ""},
		{"above the AMQP limit", "70000", prefetch, 0, `CFG_TEST_RANGE="70000" is not an integer in 1..65535`},
		{"zero", "0", prefetch, 0, `CFG_TEST_RANGE="0" is not an integer in 1..65535`},
		{"negative", "-5", prefetch, 0, `CFG_TEST_RANGE="-5" is not an integer in 1..65535`},
		{"not a number", "2k", prefetch, 0, `CFG_TEST_RANGE="2k" is not an integer in 1..65535`},
		{"port", "8080", (*config.Reader).Port, 8080, ""},
		{"port zero", "0", (*config.Reader).Port, 0, `CFG_TEST_RANGE="0" is not an integer in 1..65535`},
		{"port too high", "65536", (*config.Reader).Port, 0, `CFG_TEST_RANGE="65536" is not an integer in 1..65535`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CFG_TEST_RANGE", tc.value)
			var r config.Reader
			if got := tc.read(&r, "CFG_TEST_RANGE"); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
			err := r.Err()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (!errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func prefetch(r *config.Reader, key string) int { return r.IntRange(key, 1, 65535) }

func TestReaderIntRangeMissingIsReportedAsMissing(t *testing.T) {
	var r config.Reader
	r.IntRange("CFG_TEST_RANGE_MISSING", 1, 10)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "missing required variable(s): CFG_TEST_RANGE_MISSING") {
		t.Errorf("Err() = %v, want the key reported missing", err)
	}
}

func TestReaderInvalidIsReportedWithTheRest(t *testing.T) {
	var r config.Reader
	r.Invalid("CFG_A=%d is above CFG_B=%d", 600, 500)
	r.String("CFG_TEST_INVALID_MISSING")
	err := r.Err()
	for _, want := range []string{"CFG_A=600 is above CFG_B=500", "CFG_TEST_INVALID_MISSING"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want it to contain %q", err, want)
		}
	}
}

func TestReaderHostsAddrsAndEndpoints(t *testing.T) {
	tests := []struct {
		name, value string
		hosts       []string // want from Hosts; nil with wantErr
		addrs       []string // want from Addrs
		endpoints   []string // want from Endpoints
		hostsErr    bool
		addrsErr    bool
		endpErr     bool
	}{
		{name: "one host", value: "127.0.0.1", hosts: []string{"127.0.0.1"}, addrsErr: true, endpErr: true},
		{name: "loopback and private", value: "127.0.0.1, 192.168.56.11", hosts: []string{"127.0.0.1", "192.168.56.11"}, addrsErr: true, endpErr: true},
		{name: "a host name is refused", value: "localhost", hostsErr: true, addrsErr: true, endpErr: true},
		{name: "addresses", value: "127.0.0.1:9111,[::1]:9111", hostsErr: true, addrs: []string{"127.0.0.1:9111", "[::1]:9111"}, endpoints: []string{"127.0.0.1:9111", "[::1]:9111"}},
		{name: "names dial but do not bind", value: "rabbit-1:5672, 10.0.0.2:5672", hostsErr: true, addrsErr: true, endpoints: []string{"rabbit-1:5672", "10.0.0.2:5672"}},
		{name: "an empty host is refused", value: ":5672", hostsErr: true, addrsErr: true, endpErr: true},
		{name: "bad port", value: "127.0.0.1:99999", hostsErr: true, addrsErr: true, endpErr: true},
		{name: "empty is missing", value: " , ", hostsErr: true, addrsErr: true, endpErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CFG_TEST_BIND", tc.value)
			var hr, ar, er config.Reader
			if diff := cmp.Diff(tc.hosts, hr.Hosts("CFG_TEST_BIND")); !tc.hostsErr && diff != "" {
				t.Errorf("Hosts (-want +got):\n%s", diff)
			}
			if err := hr.Err(); (err != nil) != tc.hostsErr || (err != nil && !strings.Contains(err.Error(), "CFG_TEST_BIND")) {
				t.Errorf("Hosts error = %v, want error %v naming the key", err, tc.hostsErr)
			}
			if diff := cmp.Diff(tc.addrs, ar.Addrs("CFG_TEST_BIND")); !tc.addrsErr && diff != "" {
				t.Errorf("Addrs (-want +got):\n%s", diff)
			}
			if err := ar.Err(); (err != nil) != tc.addrsErr || (err != nil && !strings.Contains(err.Error(), "CFG_TEST_BIND")) {
				t.Errorf("Addrs error = %v, want error %v naming the key", err, tc.addrsErr)
			}
			if diff := cmp.Diff(tc.endpoints, er.Endpoints("CFG_TEST_BIND")); !tc.endpErr && diff != "" {
				t.Errorf("Endpoints (-want +got):\n%s", diff)
			}
			if err := er.Err(); (err != nil) != tc.endpErr || (err != nil && !strings.Contains(err.Error(), "CFG_TEST_BIND")) {
				t.Errorf("Endpoints error = %v, want error %v naming the key", err, tc.endpErr)
			}
		})
	}
}
