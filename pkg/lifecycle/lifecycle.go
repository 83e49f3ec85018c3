// Package lifecycle is what every service's main does around its run
// function: a context that ends on SIGINT or SIGTERM (PM2's stop signal is
// SIGINT), a JSON logger naming the service, one log line for the outcome,
// and the exit code; plus IgnoreStop, which tells the error a stop caused
// from a real failure.
package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"moviestream/pkg/config"
)

// Run loads the .env file (config.Load), then calls run with a context
// that a stop signal cancels and a logger for service, logs how it ended,
// and returns the process exit code: 0 for a clean stop, 1 when loading or
// run failed. The error is logged here, once.
func Run(service string, run func(ctx context.Context, log *slog.Logger) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", service)
	err := config.Load()
	if err == nil {
		err = run(ctx, log)
	}
	if err != nil {
		log.Error(service+" stopped", "err", err)
		return 1
	}
	log.Info(service + " stopped cleanly")
	return 0
}

// IgnoreStop returns nil when err only reports that ctx ended (the stop
// signal arrived while waiting for a dependency), and err otherwise.
func IgnoreStop(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
