package web

import (
	"net/http"
	"net/http/pprof"
	"net/netip"
)

// PprofPath is where the admin listener serves Go's profiles
// (net/http/pprof): `go tool pprof http://127.0.0.1:9110/debug/pprof/profile`
// on the service's host.
const PprofPath = "/debug/pprof/"

// handlePprof mounts net/http/pprof's handlers on mux for loopback peers
// only. The admin listener is also bound to a VM's private address, where
// Prometheus scrapes /metrics; a profile shows code paths, heap contents
// and command lines, and a CPU profile costs the service while it runs, so
// a peer other than the host itself gets 404 as if nothing were there. The
// handlers are registered on this mux, never on http.DefaultServeMux
// (importing net/http/pprof registers them there too, but no server in
// moviestream serves the default mux).
func handlePprof(mux *http.ServeMux) {
	loopback := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ap, err := netip.ParseAddrPort(r.RemoteAddr)
			if err != nil || !ap.Addr().Unmap().IsLoopback() {
				http.NotFound(w, r)
				return
			}
			h(w, r)
		})
	}
	mux.Handle("GET "+PprofPath, loopback(pprof.Index))
	mux.Handle("GET "+PprofPath+"cmdline", loopback(pprof.Cmdline))
	mux.Handle("GET "+PprofPath+"profile", loopback(pprof.Profile))
	mux.Handle("GET "+PprofPath+"symbol", loopback(pprof.Symbol))
	mux.Handle("POST "+PprofPath+"symbol", loopback(pprof.Symbol))
	mux.Handle("GET "+PprofPath+"trace", loopback(pprof.Trace))
}
