package billingapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/testenv"
	"moviestream/pkg/web"
	"moviestream/services/gateway/internal/billingapi"
)

// BenchmarkPostRabbitMQ is POST /api/billing end to end in one process: 64
// keep-alive clients, the gateway's engine with its metrics, the
// publisher as main builds it (default options) and a real quorum queue.
// It reports req/s and the p99 of one request. Client and server share
// the machine's cores, so it ranks changes rather than predicts the
// deployed gateway's figure.
func BenchmarkPostRabbitMQ(b *testing.B) {
	cfg := brokertest.Config(b)
	topo := brokertest.Topology(b, cfg)
	pub := broker.NewPublisher(cfg, topo, 0, discardLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pub.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !pub.Status().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("publisher not connected: %s", pub.Status().Error)
		}
	}

	reg := prometheus.NewRegistry()
	e, err := ginweb.NewEngine(discardLog(), nil, ginweb.WithMetrics(web.NewHTTPMetrics(reg, "gateway")))
	if err != nil {
		b.Fatal(err)
	}
	e.POST("/api/billing", billingapi.New(pub, 5*time.Second, billingapi.NewMetrics(reg)).Post)
	srv := httptest.NewServer(e)
	b.Cleanup(srv.Close)

	const clients = 64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 10 * time.Second}
	b.Cleanup(client.CloseIdleConnections)
	testenv.Concurrently(b, clients, "req/s", func(int) error {
		return postOnce(client, srv.URL+"/api/billing")
	})
}

func postOnce(client *http.Client, url string) error {
	resp, err := client.Post(url, "application/json", strings.NewReader(validBody))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
