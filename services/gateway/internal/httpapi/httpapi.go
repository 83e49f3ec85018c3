// Package httpapi assembles the gateway's routes: the movie API proxied to
// inventory, order intake for billing, health endpoints and the API docs.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/broker"
	"moviestream/pkg/web"
)

// Deps are the gateway's adapters, built in main.
type Deps struct {
	Movies      http.Handler // the inventory proxy
	PostBilling gin.HandlerFunc
	// Broker reports the publisher's connection for /ready.
	Broker func() broker.Status
	// Docs serves /openapi.yaml and /docs; nil leaves both unrouted.
	Docs http.Handler
}

// New returns the gateway's HTTP handler.
func New(d Deps, log *slog.Logger, trustedProxies []string) (http.Handler, error) {
	e, err := web.NewEngine(log, trustedProxies)
	if err != nil {
		return nil, err
	}
	e.GET("/health", web.Health)
	e.GET("/ready", func(c *gin.Context) {
		s := d.Broker()
		status := http.StatusOK
		if !s.Connected {
			status = http.StatusServiceUnavailable
		}
		c.JSON(status, gin.H{"rabbitmq": s})
	})

	// Everything under /api/movies, any method, goes to inventory as is;
	// inventory decides what is found or allowed.
	movies := gin.WrapH(d.Movies)
	e.Any("/api/movies", movies)
	e.Any("/api/movies/*rest", movies)

	e.POST("/api/billing", d.PostBilling)
	e.POST("/api/billing/", d.PostBilling)
	if d.Docs != nil {
		docs := gin.WrapH(d.Docs)
		e.GET("/openapi.yaml", docs)
		e.GET("/docs", docs)
		e.GET("/docs/*file", docs)
	}
	return e, nil
}
