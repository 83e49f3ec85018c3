// Package backoff computes capped exponential delays with jitter, shared by
// every retry loop (database waits, broker redials, billing write retries) so
// none of them spins or stampedes.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff doubles its delay from Min up to Max. The zero value is not usable;
// build one with New. It is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// New returns a Backoff starting at minDelay and capped at maxDelay.
func New(minDelay, maxDelay time.Duration) *Backoff {
	return &Backoff{Min: minDelay, Max: maxDelay, next: minDelay}
}

// Next returns the next delay: the current step with up to 20% jitter.
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(b.next*2, b.Max)
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	return d - d/10 + jitter
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.next = b.Min }

// Sleep waits for the next delay or until ctx ends, returning ctx's error then.
func (b *Backoff) Sleep(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
