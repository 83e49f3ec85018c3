package broker

import "moviestream/pkg/config"

// ConfigFromEnv reads the broker's nodes from RABBITMQ_ADDRS (host:port,
// comma-separated: one node, or the members of a cluster), the vhost from
// RABBITMQ_VHOST and the credentials of one client from <user>_USER and <user>_PASSWORD:
// user is "GATEWAY_RABBITMQ", "BILLING_RABBITMQ", "RABBITMQ_ADMIN" or
// "TEST_RABBITMQ" (each with its own permissions, docs/security.md). name is
// the connection name the management UI shows. Problems are collected by
// env; check env.Err().
func ConfigFromEnv(env *config.Reader, user, name string) Config {
	return Config{
		Addrs:    env.Endpoints("RABBITMQ_ADDRS"),
		VHost:    env.String("RABBITMQ_VHOST"),
		User:     env.String(user + "_USER"),
		Password: env.String(user + "_PASSWORD"),
		Name:     name,
	}
}

// TopologyFromEnv reads the queue name from RABBITMQ_QUEUE and the number
// of replicas of its quorum queues from RABBITMQ_QUORUM_SIZE (empty:
// RabbitMQ's default). Everyone who declares the queues must read the same
// values: RabbitMQ refuses a declaration whose arguments differ.
func TopologyFromEnv(env *config.Reader) Topology {
	t := Topology{Queue: env.String("RABBITMQ_QUEUE")}
	if env.Optional("RABBITMQ_QUORUM_SIZE", "") != "" {
		// A quorum of 1 is a single node; more than 7 replicas slows every
		// write for no safety a broker cluster of this size needs.
		t.QuorumSize = env.IntRange("RABBITMQ_QUORUM_SIZE", 1, 7)
	}
	return t
}
