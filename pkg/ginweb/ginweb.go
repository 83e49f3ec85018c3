// Package ginweb adapts pkg/web to gin for the services with a gin API, the
// gateway and inventory: one engine set-up, request ids, one log line per
// failed request, recovery, and Fail, which answers an error through
// pkg/web's one status table. Billing does not import it, so it links no gin.
package ginweb

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/errs"
	"moviestream/pkg/web"
)

// NewEngine returns a gin engine set up the same way in every service: no
// redirects (a trailing slash is routed explicitly instead), 405 for a known
// path with the wrong method, JSON errors for unknown routes, request ids,
// one log line per failed request, and a recovery that hides internals.
// Only trustedProxies may set X-Forwarded-For; nil trusts nobody.
func NewEngine(log *slog.Logger, trustedProxies []string, opts ...Option) (*gin.Engine, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(trustedProxies); err != nil {
		return nil, fmt.Errorf("ginweb: trusted proxies: %w", err)
	}
	if o.metrics != nil {
		// First, so that it sees every request, unmatched ones and those
		// a later middleware refuses or a panic ends included.
		e.Use(Metrics(o.metrics))
	}
	e.Use(requestID(), logFailures(log), recovery(log))
	e.NoRoute(func(c *gin.Context) {
		web.WriteError(c.Writer, errs.New(errs.NotFound, "no route for %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		web.WriteError(c.Writer, errs.New(errs.MethodNotAllowed, "method %s not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})
	e.GET(web.HealthPath, gin.WrapF(web.Health))
	return e, nil
}

// Option changes how NewEngine sets up the engine.
type Option func(*options)

type options struct {
	metrics *web.HTTPMetrics
}

// WithMetrics records every request the engine answers in m.
func WithMetrics(m *web.HTTPMetrics) Option {
	return func(o *options) { o.metrics = m }
}

// HandleMetadata serves m at web.MetadataPath and web.MetadataV1Path.
func HandleMetadata(e *gin.Engine, m web.Metadata) {
	h := gin.WrapF(web.MetadataHandler(m))
	e.GET(web.MetadataPath, h)
	e.GET(web.MetadataV1Path, h)
}

// Fail answers err through pkg/web's one status table, with domain as the
// adapter's classification of its own errors, and records err for the
// failure log. A client that went away gets nothing: the error is logged
// only.
func Fail(c *gin.Context, err error, domain web.Classifier) {
	_ = c.Error(err)
	if !web.ClientGone(c.Request, err) {
		web.WriteError(c.Writer, web.Classify(err, domain))
	}
	c.Abort()
}

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(web.RequestIDHeader)
		if id == "" || len(id) > 128 {
			id = web.NewID()
			c.Request.Header.Set(web.RequestIDHeader, id)
		}
		c.Header(web.RequestIDHeader, id)
		c.Next()
	}
}

// logFailures logs each request whose handler recorded an error, once, at
// the edge. Handlers attach the underlying error with c.Error and answer
// with a generic message; the detail lives only here. Responses without a
// recorded error are not logged here: a proxied 5xx was logged by the
// service that produced it, and the proxy logs its own failures.
func logFailures(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		if len(c.Errors) == 0 {
			return
		}
		status := c.Writer.Status()
		// A client's mistake is not an operator's problem: 4xx only at debug.
		level := slog.LevelDebug
		if status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{
			"method", c.Request.Method, "path", c.Request.URL.Path, "status", status,
			"duration_ms", time.Since(start).Milliseconds(), "request_id", c.GetHeader(web.RequestIDHeader),
			"client_ip", c.ClientIP(),
		}
		if err := c.Errors.Last(); err != nil {
			attrs = append(attrs, "err", err.Err.Error())
		}
		log.Log(c.Request.Context(), level, "request failed", attrs...)
	}
}

func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			// ReverseProxy aborts a broken response this way; net/http must
			// see it to cut the connection.
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			log.Error("panic serving request", "panic", fmt.Sprint(v), "path", c.Request.URL.Path,
				"request_id", c.GetHeader(web.RequestIDHeader))
			if !c.Writer.Written() {
				web.WriteError(c.Writer, &errs.Error{Code: errs.Internal, Message: "internal error"})
			}
			c.Abort()
		}()
		c.Next()
	}
}
