// Command gateway is the platform's only public entry: it proxies the movie
// API to inventory and publishes orders to RabbitMQ for billing.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"golang.org/x/sync/errgroup"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/lifecycle"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
	"moviestream/services/gateway/internal/docs"
	"moviestream/services/gateway/internal/httpapi"
	"moviestream/services/gateway/internal/proxy"
)

func main() {
	os.Exit(lifecycle.Run("gateway", run))
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration (lifecycle.Run loaded .env).
	var env config.Reader
	port := env.Port("GATEWAY_PORT")
	adminAddrs := env.Addrs("GATEWAY_ADMIN_ADDR")
	inventoryURL := env.String("GATEWAY_INVENTORY_URL")
	upstreamTimeout := env.Duration("GATEWAY_UPSTREAM_TIMEOUT")
	publishTimeout := env.Duration("GATEWAY_PUBLISH_TIMEOUT")
	trusted := env.List("GATEWAY_TRUSTED_PROXIES")
	apiKeys := env.List("GATEWAY_API_KEYS") // secrets: only their number is logged
	brokerCfg := broker.ConfigFromEnv(&env, "GATEWAY_RABBITMQ", "gateway")
	topology := broker.TopologyFromEnv(&env)
	if err := env.Err(); err != nil {
		return err
	}
	target, err := url.Parse(inventoryURL)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return fmt.Errorf("config: GATEWAY_INVENTORY_URL=%q is not an absolute URL", inventoryURL)
	}
	log.Info("starting", "port", port, "admin_addr", adminAddrs, "inventory", target.String(), "broker", brokerCfg.String(),
		"queue", topology.Queue, "api_keys", len(apiKeys))

	// Infrastructure: the publisher connects (and reconnects) in the
	// background; until it is connected, orders get 503 and movies still work.
	publisher := broker.NewPublisher(brokerCfg, topology, 0, log)
	reg := web.NewRegistry()
	auth := "none"
	if len(apiKeys) > 0 {
		auth = "api-key"
	}
	meta := web.NewMetadata("gateway", "moviestream's public entry: proxies the movie API to inventory and publishes orders to RabbitMQ for billing", auth)

	// Adapters.
	movies, err := proxy.New(proxy.Config{
		Target: target, Timeout: upstreamTimeout, TrustedProxies: trusted, MaxBodyBytes: web.MaxBodyBytes,
	}, log)
	if err != nil {
		return err
	}
	apiDocs, err := docs.New()
	if err != nil {
		return err
	}
	handler, err := httpapi.New(httpapi.Deps{
		Movies:      movies,
		PostBilling: billingapi.New(publisher, publishTimeout, billingapi.NewMetrics(reg)).Post,
		Ready:       publisher.Readiness,
		Docs:        apiDocs,
		APIKeys:     apiKeys,
		Metrics:     web.NewHTTPMetrics(reg, "gateway"),
		Metadata:    meta,
	}, log, trusted)
	if err != nil {
		return err
	}

	// Serve until a signal. The publisher outlives the HTTP server: it stops
	// only once in-flight requests, their publishes included, are finished.
	// /metrics is only on the admin listener, never on the public port.
	g, gctx := errgroup.WithContext(ctx)
	pubCtx, stopPublisher := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return publisher.Run(pubCtx) })
	g.Go(func() error {
		return web.ListenAndServe(gctx, web.ServerConfig{Addrs: adminAddrs}, web.AdminMux(publisher.Readiness, reg, meta), log)
	})
	g.Go(func() error {
		defer stopPublisher()
		return web.ListenAndServe(gctx, web.ServerConfig{Addrs: []string{fmt.Sprintf(":%d", port)}}, handler, log)
	})
	return g.Wait()
}
