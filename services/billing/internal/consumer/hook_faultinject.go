//go:build faultinject

package consumer

import (
	"os"

	amqp "github.com/rabbitmq/amqp091-go"
)

// crashOn is the message id that makes this build exit as a crash would
// (no settling, no cleanup): e2e/fault's stand-in for a message that
// triggers a bug in billing.
var crashOn = os.Getenv("BILLING_FAULT_CRASH_ON_MESSAGE_ID")

func beforeProcessing(d amqp.Delivery) {
	if crashOn != "" && d.MessageId == crashOn {
		os.Exit(3)
	}
}
