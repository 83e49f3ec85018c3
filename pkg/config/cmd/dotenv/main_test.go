package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/joho/godotenv"

	"moviestream/pkg/config"
)

// tricky holds the values bash and godotenv would read differently if .env
// were sourced; e2e/scripts_test.go feeds the same file to load_env.
const tricky = "../../testdata/tricky.env"

// records runs the command on file and decodes its KEY=VALUE\0 records.
func records(t *testing.T, file string) map[string]string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{file}, &stdout, &stderr); code != 0 {
		t.Fatalf("dotenv %s: exit %d: %s", file, code, stderr.String())
	}
	out := stdout.String()
	if !strings.HasSuffix(out, "\x00") {
		t.Fatalf("output does not end with a NUL: %q", out)
	}
	got := map[string]string{}
	for _, rec := range strings.Split(strings.TrimSuffix(out, "\x00"), "\x00") {
		key, value, ok := strings.Cut(rec, "=")
		if !ok {
			t.Fatalf("record without '=': %q", rec)
		}
		got[key] = value
	}
	return got
}

// TestRecordsAreWhatTheServicesGet: for every key of the tricky file, the
// command prints exactly the value config.Load puts into a service's
// environment, which is exactly godotenv's.
func TestRecordsAreWhatTheServicesGet(t *testing.T) {
	got := records(t, tricky)

	want, err := godotenv.Read(tricky)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records differ from godotenv.Read (-want +got):\n%s", diff)
	}

	// What a service sees: config.Load into an environment without these keys.
	for key := range want {
		t.Setenv(key, "") // restores the original state after the test
		os.Unsetenv(key)
	}
	t.Setenv(config.EnvFileVar, tricky)
	if err := config.Load(); err != nil {
		t.Fatal(err)
	}
	service := map[string]string{}
	for key := range want {
		service[key] = os.Getenv(key)
	}
	if diff := cmp.Diff(service, got); diff != "" {
		t.Errorf("records differ from the service's environment (-service +records):\n%s", diff)
	}
}

// TestGodotenvRules pins the rules README documents, so a godotenv upgrade
// that changes them fails here rather than in production.
func TestGodotenvRules(t *testing.T) {
	got := records(t, tricky)
	for key, want := range map[string]string{
		"PLAIN":           "value",
		"EXPORTED":        "exported value",
		"SPACED_KEY":      "padded unquoted",
		"HASH_INSIDE":     "abc#def",
		"HASH_DQ":         "abc # not a comment",
		"SQ":              "single $HOME ${PLAIN} `id` $(id) p\\w \"dq\"",
		"DQ":              `double value value $PLAIN pw "quoted" it's`,
		"DQ_NEWLINE":      "line1\nline2",
		"DQ_MULTILINE":    "first\nsecond",
		"UNQUOTED_EXPAND": "value-value-[]-[]", // the environment's HOME is not consulted
		"BACKSLASH":       `p\w`,
		"BACKTICK":        "`id`",
		"DOLLAR_PAREN":    "$(id)",
		"PASSWORD_LIKE":   "p@ss w0rd`\"'", // $1 expands to nothing
		"EQUALS":          "a=b=c",
		"YAML_STYLE":      "colon value",
		"EMPTY":           "",
		"EMPTY_SQ":        "",
	} {
		t.Run(key, func(t *testing.T) {
			v, ok := got[key]
			if !ok || v != want {
				t.Errorf("%s = %q (present %t), want %q", key, v, ok, want)
			}
		})
	}
}

func TestRefusesWhatBashCannotRead(t *testing.T) {
	for name, tc := range map[string]struct {
		content string
		want    []string
	}{
		"key not a shell name": {"GOOD=1\nA.B=1\n", []string{`"A.B"`, "variable name"}},
		"NUL in a value":       {"GOOD=1\nNUL=a\x00b\n", []string{"NUL", "NUL byte"}},
		"unterminated quote":   {"GOOD=1\nOPEN=\"abc\n", []string{"unterminated"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "bad.env")
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{file}, &stdout, &stderr); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q on failure; load_env must get nothing", stdout.String())
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("message %q does not contain %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Errorf("no argument: exit %d, stderr %q", code, stderr.String())
	}
}
