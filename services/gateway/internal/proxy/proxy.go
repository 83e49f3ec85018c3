// Package proxy forwards the movie API to the inventory service unchanged:
// same method, path, query, headers and streamed body, and the inventory's
// exact status, headers and body back. Only failures to get an answer are
// the gateway's own, in the shared JSON error shape.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"moviestream/pkg/web"
)

// Config tunes the upstream connection.
type Config struct {
	// Target is the inventory's base URL, e.g. http://127.0.0.1:8080.
	Target *url.URL
	// Timeout bounds the wait for the inventory's response headers; past it
	// the client gets 504.
	Timeout time.Duration
	// MaxIdleConns is the idle keep-alive pool to the inventory. Go's
	// default of 2 per host makes a busy proxy dial for most requests.
	MaxIdleConns int
}

// New returns the proxy handler. It is safe for concurrent use.
func New(cfg Config, log *slog.Logger) http.Handler {
	if cfg.MaxIdleConns <= 0 {
		cfg.MaxIdleConns = 256
	}
	transport := &http.Transport{
		Proxy: nil, // never route inventory traffic through an HTTP_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          cfg.MaxIdleConns,
		MaxIdleConnsPerHost:   cfg.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
		// Pass bodies through byte for byte; compression is the client's
		// and inventory's business.
		DisableCompression: true,
	}
	target := cfg.Target
	rp := &httputil.ReverseProxy{
		// Rewrite (not Director): ReverseProxy drops client-sent
		// X-Forwarded-* before this runs, so a client cannot spoof its
		// address; SetXForwarded then records the real peer.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:    transport,
		BufferPool:   newBufferPool(32 << 10),
		ErrorHandler: errorHandler(log),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Inventory echoes the request id it was sent; drop the gateway's
		// copy so the client sees inventory's headers exactly, once.
		w.Header().Del(web.RequestIDHeader)
		rp.ServeHTTP(w, r)
	})
}

// errorHandler is the proxy's one error mapping: timeout -> 504, any other
// failure to reach inventory -> 502, client gone -> log only.
func errorHandler(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set(web.RequestIDHeader, r.Header.Get(web.RequestIDHeader))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(web.RequestIDHeader), "err", err.Error()}
		switch {
		case r.Context().Err() != nil && errors.Is(err, context.Canceled):
			log.Debug("client went away before inventory answered", attrs...)
			return
		case isTimeout(err):
			log.Warn("inventory timed out", attrs...)
			web.WriteError(w, http.StatusGatewayTimeout, web.ErrorDetail{
				Code: web.CodeGatewayTimeout, Message: "inventory service did not answer in time",
			})
		default:
			log.Warn("inventory unreachable", attrs...)
			web.WriteError(w, http.StatusBadGateway, web.ErrorDetail{
				Code: web.CodeBadGateway, Message: "inventory service unavailable",
			})
		}
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// bufferPool reuses copy buffers across requests instead of allocating 32 KiB
// for each one.
type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
