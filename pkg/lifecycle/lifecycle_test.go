package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"moviestream/pkg/lifecycle"
)

func TestIgnoreStop(t *testing.T) {
	t.Parallel()
	live := context.Background()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	boom := errors.New("boom")
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"stop while waiting", stopped, fmt.Errorf("wait: %w", context.Canceled), nil},
		{"real failure after the stop", stopped, boom, boom},
		{"cancellation without a stop", live, context.Canceled, context.Canceled},
		{"nil", live, nil, nil},
	} {
		if got := lifecycle.IgnoreStop(tt.ctx, tt.err); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
			t.Errorf("%s: IgnoreStop = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	t.Parallel()
	if code := lifecycle.Run("test", func(context.Context, *slog.Logger) error { return nil }); code != 0 {
		t.Errorf("clean run: exit %d, want 0", code)
	}
	if code := lifecycle.Run("test", func(context.Context, *slog.Logger) error { return errors.New("x") }); code != 1 {
		t.Errorf("failed run: exit %d, want 1", code)
	}
}
