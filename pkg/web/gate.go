package web

import (
	"net/http"
	"sync/atomic"

	"moviestream/pkg/errs"
)

// Gate lets a service listen before its dependencies are ready: until Open
// is called it answers every request with 503 in the JSON error shape,
// except the liveness path, which it passes through. A supervisor then sees
// the process alive (health 200) while it waits for its database, instead
// of a port that refuses connections.
type Gate struct {
	next     http.Handler
	liveness string
	message  string
	open     atomic.Bool
}

// NewGate returns a closed gate in front of next; message explains the 503.
func NewGate(next http.Handler, livenessPath, message string) *Gate {
	return &Gate{next: next, liveness: livenessPath, message: message}
}

// Open lets every request through from now on.
func (g *Gate) Open() { g.open.Store(true) }

// ServeHTTP implements http.Handler.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.open.Load() || r.URL.Path == g.liveness {
		g.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	WriteError(w, &errs.Error{Code: errs.Unavailable, Message: g.message})
}

// Readiness reports for /ready whether the gate is open: body {"open":bool}.
func (g *Gate) Readiness() (bool, any) {
	open := g.open.Load()
	return open, map[string]bool{"open": open}
}
