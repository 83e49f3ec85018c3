package pgdb

import (
	"strconv"

	"moviestream/pkg/config"
)

// ConfigFromEnv reads a database's location from PREFIX_DB_HOST, _DB_PORT,
// _DB_NAME, _DB_USER and _DB_PASSWORD (prefix "BILLING" reads
// BILLING_DB_HOST...). Problems are collected by env; check env.Err().
func ConfigFromEnv(env *config.Reader, prefix string) Config {
	return Config{
		Host:     env.String(prefix + "_DB_HOST"),
		Port:     strconv.Itoa(env.Port(prefix + "_DB_PORT")),
		Name:     env.String(prefix + "_DB_NAME"),
		User:     env.String(prefix + "_DB_USER"),
		Password: env.String(prefix + "_DB_PASSWORD"),
	}
}
