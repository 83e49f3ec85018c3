//go:build !faultinject

package consumer

import amqp "github.com/rabbitmq/amqp091-go"

// beforeProcessing is where a fault-injection build (tag faultinject,
// used by e2e/fault only) crashes billing on a chosen message; in a
// normal build it does nothing.
func beforeProcessing(amqp.Delivery) {}
