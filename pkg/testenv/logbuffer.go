package testenv

import (
	"bytes"
	"strings"
	"sync"
)

// LogBuffer collects what a logger under test writes, safe for the
// goroutines of the code under test: pass it to slog.NewTextHandler or
// slog.NewJSONHandler.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Count returns how many lines contain substr.
func (l *LogBuffer) Count(substr string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
