// Command dlq lists billing's dead letters by reason and replays chosen ones
// back to billing_queue (docs/dlq.md). It reads the broker settings from
// .env like billing does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/services/billing/internal/consumer"
	"moviestream/services/billing/internal/dlq"
)

const usage = `usage: dlq list
       dlq replay [-reason text]... [-id id[,id...]]... [-max n] [-dry-run]

list    prints the messages in the dead-letter queue grouped by reason:
        count, first and last time of death, a sample message id. Every
        message stays in the queue.
replay  moves messages from the dead-letter queue back to the queue, each
        removed from the dead-letter queue only after the broker confirmed
        its copy. Billing deduplicates on message_id, so a message replayed
        twice still makes one order.

replay flags (a message must match all that are given):
  -reason text   reason contains text (repeatable)
  -id ids        message_id is one of ids (repeatable, or comma-separated)
  -max n         move at most n messages (0: no limit)
  -dry-run       print what would move, move nothing

The broker and queue come from RABBITMQ_* in .env (ENV_FILE overrides); the tool
connects as the administrator RABBITMQ_ADMIN_USER: billing's own user cannot
read the DLQ.
`

// errUsage marks a command line that cannot run; main exits 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "dlq: %v\n\n%s", err, usage)
			os.Exit(2)
		}
		log.Error("dlq failed", "err", err)
		os.Exit(1)
	}
}

// command is a parsed command line.
type command struct {
	name   string // "list" or "replay"
	filter dlq.Filter
	dryRun bool
}

func parseArgs(args []string) (command, error) {
	if len(args) == 0 {
		return command{}, fmt.Errorf("%w: no command", errUsage)
	}
	cmd := command{name: args[0]}
	fs := flag.NewFlagSet("dlq "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usage is printed once, by main
	switch cmd.name {
	case "list":
	case "replay":
		fs.Func("reason", "", func(v string) error {
			if v == "" {
				return errors.New("empty reason")
			}
			cmd.filter.Reasons = append(cmd.filter.Reasons, v)
			return nil
		})
		fs.Func("id", "", func(v string) error {
			for id := range strings.SplitSeq(v, ",") {
				if id = strings.TrimSpace(id); id != "" {
					cmd.filter.IDs = append(cmd.filter.IDs, id)
				}
			}
			return nil
		})
		fs.IntVar(&cmd.filter.Max, "max", 0, "")
		fs.BoolVar(&cmd.dryRun, "dry-run", false, "")
	case "help", "-h", "-help", "--help":
		return command{}, fmt.Errorf("%w: help requested", errUsage)
	default:
		return command{}, fmt.Errorf("%w: unknown command %q", errUsage, cmd.name)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return command{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return command{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if cmd.filter.Max < 0 {
		return command{}, fmt.Errorf("%w: -max must be 0 or more", errUsage)
	}
	return cmd, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cmd, err := parseArgs(args)
	if err != nil {
		return err
	}

	// Configuration.
	if err := config.Load(); err != nil {
		return err
	}
	var env config.Reader
	brokerCfg := broker.ConfigFromEnv(&env, "RABBITMQ_ADMIN", "dlq")
	topo := broker.TopologyFromEnv(&env)
	if err := env.Err(); err != nil {
		return err
	}

	// One connection, no redial: an operator's command fails fast.
	conn, err := broker.Dial(brokerCfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", brokerCfg.String(), err)
	}
	defer conn.Close()

	tool := dlq.New(conn, dlq.Config{
		DeadLetterQueue:   topo.DeadLetterQueue(),
		Queue:             topo.Queue,
		ReasonHeader:      consumer.HeaderReason,
		FailedAtHeader:    consumer.HeaderFailedAt,
		DeadLetterHeaders: []string{consumer.HeaderReason, consumer.HeaderOriginalQueue, consumer.HeaderFailedAt},
	})
	if cmd.name == "list" {
		groups, err := tool.List(ctx)
		if err != nil {
			return err
		}
		return printGroups(out, topo.DeadLetterQueue(), groups)
	}
	rep, err := tool.Replay(ctx, cmd.filter, cmd.dryRun)
	printReport(out, topo, rep, cmd.dryRun)
	return err
}

func printGroups(out io.Writer, queue string, groups []dlq.Group) error {
	total := 0
	for _, g := range groups {
		total += g.Count
	}
	fmt.Fprintf(out, "%s: %d message(s)\n", queue, total)
	if total == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tFIRST\tLAST\tSAMPLE_ID\tREASON")
	for _, g := range groups {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", g.Count, when(g.First), when(g.Last), orDash(g.SampleID), printable(g.Reason))
	}
	return tw.Flush()
}

func printReport(out io.Writer, topo broker.Topology, rep dlq.Report, dryRun bool) {
	verb := "moved"
	if dryRun {
		verb = "would move"
	}
	for _, m := range rep.Moved {
		fmt.Fprintf(out, "%s message_id=%s reason=%s\n", verb, orDash(printable(m.ID)), printable(m.Reason))
		if m.ID == "" {
			fmt.Fprintln(out, "  warning: no message_id, billing cannot deduplicate this message")
		}
	}
	if dryRun {
		fmt.Fprintf(out, "dry run: %d message(s) would move from %s to %s; nothing moved\n", len(rep.Moved), topo.DeadLetterQueue(), topo.Queue)
		return
	}
	fmt.Fprintf(out, "replayed %d message(s) from %s to %s, %d left in place\n", len(rep.Moved), topo.DeadLetterQueue(), topo.Queue, rep.Kept)
	if len(rep.Moved) > 0 {
		fmt.Fprintln(out, "billing deduplicates on message_id: a message replayed twice still makes one order")
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable quotes s when it holds characters a terminal would mangle.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
