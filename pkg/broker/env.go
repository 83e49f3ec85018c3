package broker

import (
	"strconv"

	"moviestream/pkg/config"
)

// ConfigFromEnv reads the broker's location and credentials from the
// RABBITMQ_* variables; name is the connection name the management UI
// shows. Problems are collected by env; check env.Err().
func ConfigFromEnv(env *config.Reader, name string) Config {
	return Config{
		Host:     env.String("RABBITMQ_HOST"),
		Port:     strconv.Itoa(env.Port("RABBITMQ_PORT")),
		VHost:    env.String("RABBITMQ_VHOST"),
		User:     env.String("RABBITMQ_USER"),
		Password: env.String("RABBITMQ_PASSWORD"),
		Name:     name,
	}
}

// TopologyFromEnv reads the queue name from RABBITMQ_QUEUE.
func TopologyFromEnv(env *config.Reader) Topology {
	return Topology{Queue: env.String("RABBITMQ_QUEUE")}
}
