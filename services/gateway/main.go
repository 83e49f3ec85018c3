// Command gateway is the platform's only public entry: it proxies the movie
// API to inventory and publishes orders to RabbitMQ for billing.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
	"moviestream/services/gateway/internal/docs"
	"moviestream/services/gateway/internal/httpapi"
	"moviestream/services/gateway/internal/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "gateway")
	if err := run(ctx, log); err != nil {
		log.Error("gateway stopped", "err", err)
		os.Exit(1)
	}
	log.Info("gateway stopped cleanly")
}

func run(ctx context.Context, log *slog.Logger) error {
	// Configuration.
	if err := config.Load(); err != nil {
		return err
	}
	var env config.Reader
	port := env.Int("GATEWAY_PORT")
	inventoryURL := env.String("GATEWAY_INVENTORY_URL")
	upstreamTimeout := env.Duration("GATEWAY_UPSTREAM_TIMEOUT")
	publishTimeout := env.Duration("GATEWAY_PUBLISH_TIMEOUT")
	trusted := env.List("GATEWAY_TRUSTED_PROXIES")
	brokerCfg := broker.Config{
		Host:     env.String("RABBITMQ_HOST"),
		Port:     env.String("RABBITMQ_PORT"),
		VHost:    env.String("RABBITMQ_VHOST"),
		User:     env.String("RABBITMQ_USER"),
		Password: env.String("RABBITMQ_PASSWORD"),
		Name:     "gateway",
	}
	queue := env.String("RABBITMQ_QUEUE")
	if err := env.Err(); err != nil {
		return err
	}
	target, err := url.Parse(inventoryURL)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return fmt.Errorf("config: GATEWAY_INVENTORY_URL=%q is not an absolute URL", inventoryURL)
	}
	log.Info("starting", "port", port, "inventory", target.String(), "broker", brokerCfg.String(), "queue", queue)

	// Infrastructure: the publisher connects (and reconnects) in the
	// background; until it is connected, orders get 503 and movies still work.
	// It outlives the HTTP server so in-flight publishes finish on shutdown.
	publisher := broker.NewPublisher(brokerCfg, broker.Topology{Queue: queue}, 0, log)
	pubCtx, stopPublisher := context.WithCancel(context.WithoutCancel(ctx))
	publisherDone := make(chan error, 1)
	go func() { publisherDone <- publisher.Run(pubCtx) }()
	defer func() {
		stopPublisher()
		<-publisherDone
	}()

	// Adapters.
	movies, err := proxy.New(proxy.Config{Target: target, Timeout: upstreamTimeout, TrustedProxies: trusted}, log)
	if err != nil {
		return err
	}
	apiDocs, err := docs.New()
	if err != nil {
		return err
	}
	handler, err := httpapi.New(httpapi.Deps{
		Movies:      movies,
		PostBilling: billingapi.New(publisher, queue, publishTimeout).Post,
		Broker:      publisher.Status,
		Docs:        apiDocs,
	}, log, trusted)
	if err != nil {
		return err
	}

	// Serve until a signal: stop accepting, finish in-flight requests (their
	// publishes included), then the deferred publisher shutdown closes the
	// broker connection.
	return web.ListenAndServe(ctx, web.ServerConfig{Addr: fmt.Sprintf(":%d", port)}, handler, log)
}
