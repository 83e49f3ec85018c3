package web

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// RequestIDHeader carries a request's id from the gateway to inventory and
// back to the client, so one id finds a request in every service's log.
const RequestIDHeader = "X-Request-ID"

// NewEngine returns a gin engine set up the same way in every service: no
// redirects (a trailing slash is routed explicitly instead), 405 for a known
// path with the wrong method, JSON errors for unknown routes, request ids,
// one log line per failed request, and a recovery that hides internals.
// Only trustedProxies may set X-Forwarded-For; nil trusts nobody.
func NewEngine(log *slog.Logger, trustedProxies []string) (*gin.Engine, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(trustedProxies); err != nil {
		return nil, fmt.Errorf("web: trusted proxies: %w", err)
	}
	e.Use(requestID(), logFailures(log), recovery(log))
	e.NoRoute(func(c *gin.Context) {
		WriteError(c.Writer, http.StatusNotFound, ErrorDetail{
			Code: CodeNotFound, Message: fmt.Sprintf("no route for %s %s", c.Request.Method, c.Request.URL.Path),
		})
	})
	e.NoMethod(func(c *gin.Context) {
		WriteError(c.Writer, http.StatusMethodNotAllowed, ErrorDetail{
			Code: CodeMethodNotAllowed, Message: fmt.Sprintf("method %s not allowed on %s", c.Request.Method, c.Request.URL.Path),
		})
	})
	return e, nil
}

// Health answers 200 while the process is up: liveness, not readiness.
func Health(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if id == "" || len(id) > 128 {
			id = NewID()
			c.Request.Header.Set(RequestIDHeader, id)
		}
		c.Header(RequestIDHeader, id)
		c.Next()
	}
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents a panic instead)
	return hex.EncodeToString(b[:])
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
			"duration_ms", time.Since(start).Milliseconds(), "request_id", c.GetHeader(RequestIDHeader),
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
				"request_id", c.GetHeader(RequestIDHeader))
			if !c.Writer.Written() {
				WriteError(c.Writer, http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "internal error"})
			}
			c.Abort()
		}()
		c.Next()
	}
}
