// Command loadtest is the Go half of `make loadtest` (scripts/loadtest.sh):
//
//	loadtest run -run-id ID -nginx-url URL -dir DIR -billing-stopped FILE
//	    measure every row against the running stack and print the table;
//	    exit 1 when a row misses its target or cannot be measured
//	loadtest cleanup -run-id ID
//	    remove what run ID left behind (the script's exit trap)
//	loadtest freeport
//	    print a free TCP port on 127.0.0.1 (for the reference nginx)
//
// It reads .env like the services (ENV_FILE, or found from the working
// directory up).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"moviestream/e2e/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
	}
	os.Exit(code)
}

var errUsage = errors.New("usage: loadtest run|cleanup|freeport [flags]")

func run(ctx context.Context, args []string) (int, error) {
	if len(args) == 0 {
		return 2, errUsage
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	runID := fs.String("run-id", "", "marks everything the run creates (lower-case letters and digits)")
	switch args[0] {
	case "run":
		nginx := fs.String("nginx-url", "", "the reference nginx in front of inventory")
		dir := fs.String("dir", os.TempDir(), "temporary directory")
		stopped := fs.String("billing-stopped", "", "file that exists while billing is stopped")
		scale := fs.Float64("scale", 1, "multiplies every duration (a quick trial: 0.3)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2, err
		}
		r, err := loadtest.NewRunner(loadtest.Options{
			RunID: *runID, NginxURL: *nginx, Dir: *dir, BillingStopped: *stopped, Scale: *scale, Log: os.Stderr,
		})
		if err != nil {
			return 1, err
		}
		start := time.Now()
		rows := r.Run(ctx)
		fmt.Printf("\nmake loadtest (run %s, %s, %s)\n\n", *runID, time.Now().UTC().Format(time.RFC3339), time.Since(start).Round(time.Second))
		if err := loadtest.Render(os.Stdout, rows); err != nil {
			return 1, err
		}
		if ctx.Err() != nil {
			return 1, ctx.Err()
		}
		if loadtest.Failed(rows) {
			return 1, errors.New("some rows missed their target (FAIL) or could not be measured (ERROR)")
		}
		return 0, nil
	case "cleanup":
		if err := fs.Parse(args[1:]); err != nil {
			return 2, err
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if err := loadtest.Cleanup(cctx, *runID); err != nil {
			return 1, err
		}
		return 0, nil
	case "freeport":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 1, fmt.Errorf("free port: %w", err)
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		return 0, nil
	}
	return 2, errUsage
}
