package broker_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/broker/brokertest"
	"moviestream/pkg/testenv"
)

// benchCallers is how many requests publish at once, as in the load test
// of POST /api/billing (64 connections).
const benchCallers = 64

const benchBody = `{"user_id":"3","number_of_items":"5","total_amount":"180"}`

// BenchmarkPublish measures confirmed publishes to a quorum queue with 64
// concurrent callers (msgs/s, and the p99 of one Publish call), with the
// default options and, as the reference of the same run, bare amqp091
// publishing on one channel with up to 1,024 confirms outstanding (what
// the broker can take at all). BENCH_PUBLISH_MATRIX=1 adds channels x
// in-flight combinations, from which the defaults were chosen;
// channels=16,inflight=1 is the pool this publisher had before confirms
// were pipelined.
func BenchmarkPublish(b *testing.B) {
	cfg := brokertest.Config(b)
	b.Run("defaults", func(b *testing.B) {
		benchPublisher(b, cfg, broker.PublisherOptions{})
	})
	b.Run("bare-reference", func(b *testing.B) {
		benchBare(b, cfg)
	})
	if os.Getenv("BENCH_PUBLISH_MATRIX") == "" {
		return
	}
	for _, o := range []broker.PublisherOptions{
		{Channels: 16, InFlight: 1},
		{Channels: 1, InFlight: 256}, {Channels: 1, InFlight: 64},
		{Channels: 2, InFlight: 256}, {Channels: 2, InFlight: 64},
		{Channels: 4, InFlight: 256}, {Channels: 4, InFlight: 16},
		{Channels: 8, InFlight: 256}, {Channels: 8, InFlight: 8},
	} {
		b.Run(fmt.Sprintf("channels=%d,inflight=%d", o.Channels, o.InFlight), func(b *testing.B) {
			benchPublisher(b, cfg, o)
		})
	}
}

func benchPublisher(b *testing.B, cfg broker.Config, opts broker.PublisherOptions) {
	topo := brokertest.Topology(b, cfg)
	p := broker.NewPublisherWithOptions(cfg, topo, opts, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(b, 10*time.Second, "publisher connected", func() bool { return p.Status().Connected })

	b.ReportAllocs()
	testenv.Concurrently(b, benchCallers, "msgs/s", func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return p.Publish(ctx, amqp.Publishing{
			MessageId: fmt.Sprintf("bench-%d", i), ContentType: "application/json", Body: []byte(benchBody),
		})
	})
}

// benchBare publishes b.N messages from one goroutine on one channel,
// keeping up to 1,024 confirms outstanding.
func benchBare(b *testing.B, cfg broker.Config) {
	topo, _ := brokertest.Declared(b, cfg)
	ch := brokertest.Channel(b, cfg)
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	const window = 1024
	outstanding := make(chan *amqp.DeferredConfirmation, window)
	waitOne := func() {
		if !(<-outstanding).Wait() {
			b.Error("nacked")
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if len(outstanding) == window {
			waitOne()
		}
		dc, err := ch.PublishWithDeferredConfirm("", topo.Queue, true, false, amqp.Publishing{
			MessageId: fmt.Sprintf("bare-%d", i), ContentType: "application/json",
			DeliveryMode: amqp.Persistent, Body: []byte(benchBody),
		})
		if err != nil {
			b.Fatal(err)
		}
		outstanding <- dc
	}
	for len(outstanding) > 0 {
		waitOne()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
