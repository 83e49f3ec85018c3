// Package proxy forwards the movie API to the inventory service unchanged:
// same method, path, query, headers and streamed body, and the inventory's
// exact status, headers and body back. Only failures to get an answer are
// the gateway's own, in the shared JSON error shape, and so are the requests
// it refuses to forward: a path with dot segments or encoded slashes (400),
// a body over the limit (413), and a body the client cut short (400).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
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
	// MaxBodyBytes is the largest request body forwarded, inventory's own
	// limit (web.MaxBodyBytes) in the gateway: a larger Content-Length gets
	// 413 at once, and a chunked body is cut off with 413 once it passes
	// the limit, so inventory never has to refuse one mid-upload. 0 = no
	// limit.
	MaxBodyBytes int64
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
		if e := checkPath(r.URL); e != nil {
			refuse(w, r, log, e)
			return
		}
		limit := cfg.MaxBodyBytes
		if limit > 0 && r.ContentLength > limit {
			refuse(w, r, log, &errs.Error{Code: errs.TooLarge, Message: fmt.Sprintf("%v: limit is %d bytes", web.ErrTooLarge, limit)})
			return
		}
		// Inventory echoes the request id it was sent; drop the gateway's
		// copy so the client sees inventory's headers exactly, once.
		w.Header().Del(web.RequestIDHeader)
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			b := &body{rc: r.Body, size: r.ContentLength}
			if limit > 0 {
				b.rc = http.MaxBytesReader(w, r.Body, limit)
			}
			r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
			r.Body = b
		}
		rp.ServeHTTP(w, r)
	}), nil
}

// errPath is why checkPath refuses a path.
var errPath = errors.New("path must not contain dot segments (. or ..) or encoded slashes (%2F, %5C)")

// checkPath refuses a path that means different things to different
// readers: a dot segment, plain or percent-encoded, which a server or a
// client library may resolve out of /api/movies, or an encoded slash or
// backslash, which the gateway routes as one segment and a server behind it
// may decode into a separator. Both are checked before anything is
// forwarded; the gateway's router neither cleans nor redirects paths, and
// ReverseProxy forwards the raw path as the client sent it.
func checkPath(u *url.URL) *errs.Error {
	raw := strings.ToLower(u.EscapedPath())
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return &errs.Error{Code: errs.InvalidPath, Message: errPath.Error()}
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return &errs.Error{Code: errs.InvalidPath, Message: errPath.Error()}
		}
	}
	return nil
}

// refuse answers a request the gateway does not forward. Its body, if any,
// is left unread, so the connection is not reused.
func refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, e *errs.Error) {
	log.Debug("request refused", "method", r.Method, "path", r.URL.EscapedPath(),
		"request_id", r.Header.Get(web.RequestIDHeader), "code", e.Code)
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	web.WriteError(w, e)
}

// body is the client's request body as the transport reads it, remembering
// how the reading ended: to tell a client that cut its body short (or sent
// it too slowly, or past the limit) from an inventory that failed.
type body struct {
	rc   io.ReadCloser
	size int64 // Content-Length; -1 when unknown

	mu  sync.Mutex
	n   int64
	eof bool
	err error // the first read error other than io.EOF
}

type bodyKey struct{}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.eof = true
	case b.err == nil:
		b.err = err
	}
	b.mu.Unlock()
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// fault is the client's share of a failure to proxy r: nil when its body,
// if any, was fine.
func fault(r *http.Request) *errs.Error {
	b, ok := r.Context().Value(bodyKey{}).(*body)
	if !ok {
		return nil
	}
	b.mu.Lock()
	err, complete := b.err, b.eof || (b.size > 0 && b.n >= b.size)
	b.mu.Unlock()
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &errs.Error{Code: errs.TooLarge, Message: fmt.Sprintf("%v: limit is %d bytes", web.ErrTooLarge, tooBig.Limit)}
	case err != nil:
		return &errs.Error{Code: errs.IncompleteBody, Message: web.ErrIncompleteBody.Error()}
	case !complete && r.Context().Err() != nil:
		// net/http cancels the request's context when reading the
		// connection fails, and only the body was being read: the client
		// half-closed (or dropped) the connection before its body ended.
		// The transport may report that cancellation before the body
		// read's own error reaches this wrapper.
		return &errs.Error{Code: errs.IncompleteBody, Message: web.ErrIncompleteBody.Error()}
	}
	return nil
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
// once: a client's faulty body -> 400 or 413, logged at debug (the client
// may still be reading though it stopped sending); client gone -> log only;
// otherwise classify's answer.
func errorHandler(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if id := r.Header.Get(web.RequestIDHeader); id != "" {
			w.Header().Set(web.RequestIDHeader, id)
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "request_id", r.Header.Get(web.RequestIDHeader), "err", err.Error()}
		if e := fault(r); e != nil {
			log.Debug("client request body unusable, not proxied", append(attrs, "code", e.Code)...)
			w.Header().Set("Connection", "close")
			web.WriteError(w, e)
			return
		}
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
