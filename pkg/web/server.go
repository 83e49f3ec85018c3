package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServerConfig holds where a server listens and the timeouts every server
// sets; zero timeouts get the defaults below, which suit small JSON APIs
// behind a proxy.
type ServerConfig struct {
	// Addrs are the host:port addresses to listen on, one listener each,
	// all served by one http.Server (for example loopback plus a private
	// address); ":port" is every interface.
	Addrs             []string
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish.
	ShutdownTimeout time.Duration
}

func (c ServerConfig) withDefaults() ServerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 30*time.Second)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.ShutdownTimeout, 20*time.Second)
	return c
}

// NewServer builds an http.Server with every timeout set.
func NewServer(cfg ServerConfig, h http.Handler, log *slog.Logger) *http.Server {
	cfg = cfg.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ServeListeners runs srv on every listener of lns until ctx is cancelled or
// one of them fails; then it stops accepting on all of them (Shutdown closes
// every listener) and waits up to shutdownTimeout for in-flight requests. It
// returns nil after a clean shutdown, else the first error.
func ServeListeners(ctx context.Context, srv *http.Server, lns []net.Listener, shutdownTimeout time.Duration) error {
	if len(lns) == 0 {
		return errors.New("web: serve: no listener")
	}
	type result struct {
		addr net.Addr
		err  error
	}
	results := make(chan result, len(lns))
	for _, ln := range lns {
		go func() { results <- result{ln.Addr(), srv.Serve(ln)} }()
	}

	var first error
	pending := len(lns)
	select {
	case r := <-results:
		pending--
		first = fmt.Errorf("web: serve %s: %w", r.addr, r.err)
	case <-ctx.Done():
	}
	if shutdownTimeout <= 0 {
		shutdownTimeout = ServerConfig{}.withDefaults().ShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && first == nil {
		first = fmt.Errorf("web: shutdown %s: %w", listenerAddrs(lns), err)
	}
	for ; pending > 0; pending-- {
		if r := <-results; r.err != nil && !errors.Is(r.err, http.ErrServerClosed) && first == nil {
			first = fmt.Errorf("web: serve %s: %w", r.addr, r.err)
		}
	}
	return first
}

func listenerAddrs(lns []net.Listener) string {
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr().String()
	}
	return strings.Join(addrs, ",")
}

// Listen opens one TCP listener per address; on an error it closes those it
// opened and names the address that failed.
func Listen(addrs []string) ([]net.Listener, error) {
	if len(addrs) == 0 {
		return nil, errors.New("web: listen: no address")
	}
	lns := make([]net.Listener, 0, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("web: listen %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// HostPorts joins each host with port: ["127.0.0.1", "::1"], 8080 ->
// ["127.0.0.1:8080", "[::1]:8080"]. An empty host means every interface.
func HostPorts(hosts []string, port int) []string {
	addrs := make([]string, len(hosts))
	for i, h := range hosts {
		addrs[i] = net.JoinHostPort(h, strconv.Itoa(port))
	}
	return addrs
}

// ListenAndServe listens on every address of cfg.Addrs and serves h on all
// of them with one http.Server until ctx is cancelled.
func ListenAndServe(ctx context.Context, cfg ServerConfig, h http.Handler, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	lns, err := Listen(cfg.Addrs)
	if err != nil {
		return err
	}
	log.Info("http server listening", "addr", listenerAddrs(lns))
	return ServeListeners(ctx, NewServer(cfg, h, log), lns, cfg.ShutdownTimeout)
}
