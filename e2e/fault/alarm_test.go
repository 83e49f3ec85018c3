//go:build fault

package fault

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/testenv"
)

// TestAlarmDoesNotStallAcks: during a memory alarm RabbitMQ stops reading
// from every connection that publishes. Billing's dead-letter copies travel
// on a connection of their own, so while its copy of a bad message cannot
// get through, the orders of the same batch are still written and their
// acknowledgements still reach the broker. The copy waits for its confirm
// (5 s), then billing rejects the original, which RabbitMQ dead-letters
// itself; the copy, already on its way, arrives too once the alarm clears,
// so the DLQ may hold the bad message twice (a replay dedupes it).
func TestAlarmDoesNotStallAcks(t *testing.T) {
	s := newStack(t)
	s.billingCreatesTopology(t)

	const valid = 20
	msgs := []amqp.Publishing{{MessageId: "alarm-poison", ContentType: jsonType, Body: []byte(`{"user_id":`)}}
	for i := range valid {
		body, _, _, _ := orderBody(i)
		msgs = append(msgs, amqp.Publishing{MessageId: fmt.Sprintf("alarm-%d", i), ContentType: jsonType, Body: body})
	}
	s.publish(t, msgs...)

	s.rmq.SetMemoryWatermark(t, "0.0001")
	cleared := false
	defer func() {
		if !cleared {
			s.rmq.SetMemoryWatermark(t, "0.4")
		}
	}()
	testenv.WaitFor(t, 15*time.Second, "memory alarm", func() bool { return strings.Contains(s.rmq.Alarms(t), "memory") })

	start := time.Now()
	s.billing.Start(t)
	testenv.WaitFor(t, 30*time.Second, "valid orders written during the alarm", func() bool {
		return s.countOrders(t, "message_id LIKE 'alarm-%'") == valid
	})
	written := time.Since(start)
	acked := testenv.WaitFor(t, 30*time.Second, "every message settled during the alarm", func() bool {
		q := s.rmq.Queues(t, vhost)[queue]
		return q.Total() == 0
	})
	if a := s.rmq.Alarms(t); !strings.Contains(a, "memory") {
		t.Fatalf("the alarm cleared by itself (%q): the test proved nothing", a)
	}

	s.rmq.SetMemoryWatermark(t, "0.4")
	cleared = true
	var dead int
	testenv.WaitFor(t, 30*time.Second, "the bad message in the DLQ", func() bool {
		_, dead = s.ready(t)
		return dead >= 1
	})
	if dead > 2 {
		t.Errorf("DLQ holds %d copies of one bad message, want 1 or 2", dead)
	}
	if n := s.countOrders(t, "true"); n != valid {
		t.Errorf("orders = %d, want %d", n, valid)
	}
	t.Logf("memory alarm with a bad message in the batch: %d valid orders written %s after billing started (its dead-letter copy waited 5 s for a confirm), queue settled %s later, during the alarm; the bad message reached the DLQ (%d copies) once the alarm cleared",
		valid, written.Round(time.Millisecond), acked.Round(time.Millisecond), dead)
}
