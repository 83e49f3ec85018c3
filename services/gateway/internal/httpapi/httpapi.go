// Package httpapi assembles the gateway's routes: the movie API proxied to
// inventory, order intake for billing, health endpoints and the API docs.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/docs"
)

// Deps are the gateway's adapters, built in main.
type Deps struct {
	Movies      http.Handler // the inventory proxy
	PostBilling gin.HandlerFunc
	// Ready reports the publisher's connection for /ready.
	Ready web.ReadinessFunc
	// Docs serves docs.SpecPath and docs.UIPath; nil leaves both unrouted.
	Docs http.Handler
	// APIKeys, when not empty, are the keys one of which every request
	// under /api other than GET, HEAD and OPTIONS must send in APIKeyHeader.
	APIKeys []string
	// Metrics, when not nil, records every request (the proxied ones too).
	Metrics *web.HTTPMetrics
	// Metadata is served at web.MetadataPath and web.MetadataV1Path.
	Metadata web.Metadata
}

// New returns the gateway's HTTP handler.
func New(d Deps, log *slog.Logger, trustedProxies []string) (http.Handler, error) {
	var opts []ginweb.Option
	if d.Metrics != nil {
		opts = append(opts, ginweb.WithMetrics(d.Metrics))
	}
	e, err := ginweb.NewEngine(log, trustedProxies, opts...)
	if err != nil {
		return nil, err
	}
	e.GET(web.ReadyPath, gin.WrapF(web.Ready(d.Ready)))
	ginweb.HandleMetadata(e, d.Metadata)

	api := e.Group("/api", requireAPIKey(d.APIKeys))

	// Everything under /api/movies, any method, goes to inventory as is;
	// inventory decides what is found or allowed.
	movies := gin.WrapH(d.Movies)
	api.Any("/movies", movies)
	api.Any("/movies/*rest", movies)

	api.POST("/billing", d.PostBilling)
	api.POST("/billing/", d.PostBilling)
	if d.Docs != nil {
		h := gin.WrapH(d.Docs)
		e.GET(docs.SpecPath, h)
		e.GET(docs.UIPath, h)
		e.GET(docs.UIPath+"/*file", h)
	}
	return e, nil
}
