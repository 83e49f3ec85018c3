package broker

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeliveryLimit is how many times RabbitMQ hands out a message before it
// dead-letters it instead. Billing retries database outages in process
// without returning messages, so returns only come from crashes, restarts
// with prefetched messages, and unexpected write errors: ten is far above
// what an honest message sees and bounds a message that crashes its
// consumer.
const DeliveryLimit = 10

// ErrTopologyMismatch means the queue exists with other arguments (for
// example an older classic queue). RabbitMQ refuses to change a queue's
// arguments in place; an operator has to delete it.
var ErrTopologyMismatch = errors.New("queue exists with different arguments")

// Topology describes billing's queue and its dead-letter queue. The gateway
// and billing both declare it from here, with identical arguments; the first
// to start creates it.
type Topology struct {
	Queue string
	// QuorumSize is the number of replicas of each queue when it is
	// created (x-quorum-initial-group-size); zero leaves it to RabbitMQ,
	// which places one on every cluster member up to its quorum_cluster_size
	// (3 on RabbitMQ 3.10). It is part
	// of the declaration: everyone must use the same value.
	QuorumSize int
}

// DeadLetterQueue is where messages that can never become orders end.
func (t Topology) DeadLetterQueue() string { return t.Queue + ".dlq" }

// QueueArgs returns the main queue's arguments: a quorum queue (replicated
// log on disk, so even hand-published non-persistent messages survive a
// broker restart, and it supports x-delivery-limit) that dead-letters
// through the default exchange into the DLQ.
func (t Topology) QueueArgs() amqp.Table {
	args := t.quorumArgs()
	args["x-delivery-limit"] = int64(DeliveryLimit)
	args["x-dead-letter-exchange"] = ""
	args["x-dead-letter-routing-key"] = t.DeadLetterQueue()
	return args
}

// DeadLetterArgs returns the DLQ's arguments; it is a quorum queue too, so
// dead letters are as durable as orders.
func (t Topology) DeadLetterArgs() amqp.Table { return t.quorumArgs() }

func (t Topology) quorumArgs() amqp.Table {
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if t.QuorumSize > 0 {
		args["x-quorum-initial-group-size"] = int64(t.QuorumSize)
	}
	return args
}

// Declare creates both queues, or checks that they exist as described. On a
// mismatch the broker closes ch; the error wraps ErrTopologyMismatch and
// says what to do.
func (t Topology) Declare(ch *amqp.Channel) error {
	if _, err := ch.QueueDeclare(t.DeadLetterQueue(), true, false, false, false, t.DeadLetterArgs()); err != nil {
		return t.declareErr(t.DeadLetterQueue(), err)
	}
	if _, err := ch.QueueDeclare(t.Queue, true, false, false, false, t.QueueArgs()); err != nil {
		return t.declareErr(t.Queue, err)
	}
	return nil
}

func (t Topology) declareErr(queue string, err error) error {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return fmt.Errorf("broker: declare %q: %w (%s); delete the queue or align its arguments: quorum, x-delivery-limit=%d, dead-letter to %q, x-quorum-initial-group-size=%s (RABBITMQ_QUORUM_SIZE)",
			queue, ErrTopologyMismatch, amqpErr.Reason, DeliveryLimit, t.DeadLetterQueue(), t.quorumSizeText())
	}
	return fmt.Errorf("broker: declare %q: %w", queue, err)
}

func (t Topology) quorumSizeText() string {
	if t.QuorumSize == 0 {
		return "unset"
	}
	return fmt.Sprint(t.QuorumSize)
}
