// Command dotenv prints the variables of a .env file for scripts/lib.sh
// (load_env), parsed by config.ReadFile: godotenv, the very parser the
// services use, so a script and a service never read a value differently.
//
//	dotenv FILE
//
// Output: one record per variable, KEY=VALUE followed by a NUL byte, sorted
// by key. Bash reads the records with mapfile, NUL as the delimiter, and
// assigns each with export, which evaluates nothing: no quoting, expansion
// or command substitution happens on the bash side. A key that is not a
// shell name, or a value holding a NUL (which no environment variable can
// hold), is refused with exit status 1 and nothing printed, rather than
// passed on differently.
//
// Why here: the layout keeps pkg/ for code the services share, and this
// command is the scripts' door to that shared code, the config package. It
// lives beside it, in the pkg module, so it is built against the same
// godotenv version as the services (one go.mod, one go.work); a separate
// module could drift to another version and parse differently.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"moviestream/pkg/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// shellName is what bash accepts as a variable name.
var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: dotenv FILE")
		return 2
	}
	values, err := config.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "dotenv: %v\n", err)
		return 1
	}
	keys := make([]string, 0, len(values))
	var bad []string
	for key, value := range values {
		switch {
		case !shellName.MatchString(key):
			bad = append(bad, fmt.Sprintf("%q is not a valid variable name", key))
		case strings.ContainsRune(value, 0):
			bad = append(bad, fmt.Sprintf("the value of %s contains a NUL byte", key))
		}
		keys = append(keys, key)
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		fmt.Fprintf(stderr, "dotenv: %s: %s\n", args[0], strings.Join(bad, "; "))
		return 1
	}
	slices.Sort(keys)
	w := bufio.NewWriter(stdout)
	for _, key := range keys {
		fmt.Fprintf(w, "%s=%s\x00", key, values[key])
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "dotenv: write: %v\n", err)
		return 1
	}
	return 0
}
