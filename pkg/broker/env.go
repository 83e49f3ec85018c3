package broker

import (
	"strconv"

	"moviestream/pkg/config"
)

// ConfigFromEnv reads the broker's location from the RABBITMQ_* variables
// and the credentials of one client from <user>_USER and <user>_PASSWORD:
// user is "GATEWAY_RABBITMQ", "BILLING_RABBITMQ", "RABBITMQ_ADMIN" or
// "TEST_RABBITMQ" (each with its own permissions, docs/security.md). name is
// the connection name the management UI shows. Problems are collected by
// env; check env.Err().
func ConfigFromEnv(env *config.Reader, user, name string) Config {
	return Config{
		Host:     env.String("RABBITMQ_HOST"),
		Port:     strconv.Itoa(env.Port("RABBITMQ_PORT")),
		VHost:    env.String("RABBITMQ_VHOST"),
		User:     env.String(user + "_USER"),
		Password: env.String(user + "_PASSWORD"),
		Name:     name,
	}
}

// TopologyFromEnv reads the queue name from RABBITMQ_QUEUE.
func TopologyFromEnv(env *config.Reader) Topology {
	return Topology{Queue: env.String("RABBITMQ_QUEUE")}
}
