// Package proxy forwards the movie API to the inventory service unchanged:
// same method, path, query, headers and streamed body, and the inventory's
// exact status, headers and body back. Only failures to get an answer are
// the gateway's own, in the shared JSON error shape.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"moviestream/pkg/errs"
	"moviestream/pkg/web"
)

// Config tunes the upstream connection.
type Config struct {
	// Target is the inventory's base URL, e.g. http://127.0.0.1:8080.
	Target *url.URL
	// Timeout bounds the wait for the inventory's response headers; past it
	// the client gets 504.
	Timeout time.Duration
	// TrustedProxies are peers (IPs or CIDRs) whose X-Forwarded-For is kept
	// and extended; from anyone else it is dropped, so a client cannot spoof
	// the address inventory sees.
	TrustedProxies []string
	// MaxIdleConns is the idle keep-alive pool to the inventory. Go's
	// default of 2 per host makes a busy proxy dial for most requests.
	MaxIdleConns int
}

// New returns the proxy handler. It is safe for concurrent use. It fails
// only on a malformed TrustedProxies entry.
func New(cfg Config, log *slog.Logger) (http.Handler, error) {
	trusted, err := parseNets(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
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
		// X-Forwarded-* before this runs; only a trusted peer's chain is put
		// back, and SetXForwarded then appends the real peer.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 && isTrusted(trusted, pr.In.RemoteAddr) {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
		},
		// Inventory echoes the request id; make sure the client gets one
		// even from an upstream that does not.
		ModifyResponse: func(resp *http.Response) error {
			if id := resp.Request.Header.Get(web.RequestIDHeader); id != "" && resp.Header.Get(web.RequestIDHeader) == "" {
				resp.Header.Set(web.RequestIDHeader, id)
			}
			return nil
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
	}), nil
}

func parseNets(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("proxy: trusted proxy %q is neither an IP nor a CIDR", e)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func isTrusted(nets []netip.Prefix, remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	for _, n := range nets {
		if n.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// errorHandler answers a failure to get inventory's response, logged here
// once: client gone -> log only; otherwise classify's answer.
func errorHandler(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if id := r.Header.Get(web.RequestIDHeader); id != "" {
			w.Header().Set(web.RequestIDHeader, id)
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(web.RequestIDHeader), "err", err.Error()}
		if web.ClientGone(r, err) {
			log.Debug("client went away before inventory answered", attrs...)
			return
		}
		e := classify(err)
		log.Warn("inventory did not answer", append(attrs, "code", e.Code)...)
		web.WriteError(w, e)
	}
}

// classify is the proxy's part of the error table: timeout -> 504, any
// other failure to reach inventory -> 502.
func classify(err error) *errs.Error {
	if isTimeout(err) {
		return &errs.Error{Code: errs.GatewayTimeout, Message: "inventory service did not answer in time"}
	}
	return &errs.Error{Code: errs.BadGateway, Message: "inventory service unavailable"}
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
