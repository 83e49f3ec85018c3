package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"moviestream/pkg/backoff"
)

func TestNextGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	b := backoff.New(100*time.Millisecond, time.Second)
	var prev time.Duration
	for i := range 20 {
		d := b.Next()
		if d < 90*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("step %d: delay %s outside [90ms, 1.1s]", i, d)
		}
		if i < 3 && d <= prev {
			t.Fatalf("step %d: delay %s did not grow from %s", i, d, prev)
		}
		prev = d
	}
	b.Reset()
	if d := b.Next(); d > 110*time.Millisecond {
		t.Fatalf("after Reset: delay %s, want about the minimum", d)
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	t.Parallel()
	b := backoff.New(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Sleep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
}
