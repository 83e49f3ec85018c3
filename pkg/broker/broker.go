// Package broker holds what the gateway and billing share about RabbitMQ: how
// to reach it, the billing_queue topology both sides must declare
// identically, a supervisor that keeps a connection alive across broker
// restarts, and publishing with publisher confirms.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/backoff"
)

// Config locates the broker: one node, or the nodes of a cluster, any of
// which will do. Password is a secret: it is never logged.
type Config struct {
	// Addrs are the nodes as host:port. Dial tries them in turn; with a
	// cluster, each is a member serving the same vhost and queues.
	Addrs    []string
	VHost    string
	User     string
	Password string
	// Heartbeat detects a dead peer; zero means 10s.
	Heartbeat time.Duration
	// Name shows in the management UI's connection list.
	Name string
}

// URL returns the AMQP URL of the node at addr, with user, password and
// vhost escaped.
func (c Config) URL(addr string) string {
	u := url.URL{
		Scheme: "amqp",
		User:   url.UserPassword(c.User, c.Password),
		Host:   addr,
		// The vhost is one path segment; "/" itself must be escaped.
		RawPath: "/" + url.PathEscape(c.VHost),
		Path:    "/" + c.VHost,
	}
	return u.String()
}

// String describes the target without the password, for logs.
func (c Config) String() string {
	return fmt.Sprintf("amqp://%s@%s/%s", c.User, strings.Join(c.Addrs, ","), c.VHost)
}

// ErrUnavailable means the broker cannot take the message now: not
// connected, blocked by a resource alarm, or no confirm in time. Callers
// answer 503; the message may be retried.
var ErrUnavailable = errors.New("broker unavailable")

// Status is a point-in-time view of a supervised connection, for readiness.
type Status struct {
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}

// Readiness is s in the shape of /ready: ready when connected, body
// {"rabbitmq": s}.
func (s Status) Readiness() (bool, any) {
	return s.Connected, map[string]Status{"rabbitmq": s}
}

// StatusBox holds a Status for concurrent readers; the zero value reads as
// "not connected yet".
type StatusBox struct{ v atomic.Pointer[Status] }

// Set records s.
func (b *StatusBox) Set(s Status) { b.v.Store(&s) }

// Get returns the last Status set.
func (b *StatusBox) Get() Status {
	if s := b.v.Load(); s != nil {
		return *s
	}
	return Status{Error: "not connected yet"}
}

// Dial opens one connection to the first node of cfg.Addrs that accepts
// it, with heartbeats (a dead peer is noticed within two of them), a 5s
// dial timeout per node and cfg.Name as the name the management UI shows.
func Dial(cfg Config) (*amqp.Connection, error) {
	conn, _, err := dialFrom(cfg, 0)
	return conn, err
}

// dialFrom tries the nodes in order starting at cfg.Addrs[start], wrapping
// around, and returns the connection and the index of the node it reached.
// Starting after the node that just failed is what moves a client to
// another member within seconds instead of retrying a dead one first.
func dialFrom(cfg Config, start int) (*amqp.Connection, int, error) {
	if len(cfg.Addrs) == 0 {
		return nil, 0, errors.New("broker: no node address configured")
	}
	heartbeat := cfg.Heartbeat
	if heartbeat <= 0 {
		heartbeat = 10 * time.Second
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.Name)
	var errs []error
	for i := range cfg.Addrs {
		n := (start + i) % len(cfg.Addrs)
		conn, err := amqp.DialConfig(cfg.URL(cfg.Addrs[n]), amqp.Config{
			Heartbeat:  heartbeat,
			Properties: props,
			Dial:       amqp.DefaultDial(5 * time.Second),
		})
		if err == nil {
			return conn, n, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", cfg.Addrs[n], err))
	}
	return nil, start, errors.Join(errs...)
}

// Session uses one live connection until the connection fails or ctx ends.
// Returning nil with ctx still live also ends the session and redials.
type Session func(ctx context.Context, conn *amqp.Connection) error

// Supervise dials the broker, runs session on the connection, and redials
// with capped backoff whenever the connection is lost, until ctx ends. A
// service started while RabbitMQ is down therefore waits instead of exiting;
// with several nodes, a redial after a lost connection tries the other
// nodes first, so a client moves to a live member without waiting.
// It returns nil once ctx is done.
func Supervise(ctx context.Context, cfg Config, log *slog.Logger, session Session) error {
	bo := backoff.New(250*time.Millisecond, 5*time.Second)
	failures, next := 0, 0
	for ctx.Err() == nil {
		conn, node, err := dialFrom(cfg, next)
		if err != nil {
			failures++
			// Log the first failure and then every tenth: an outage is visible
			// without a line every few hundred milliseconds.
			if failures == 1 || failures%10 == 0 {
				log.Warn("rabbitmq not reachable, retrying", "broker", cfg.String(), "attempts", failures, "err", err)
			}
			if bo.Sleep(ctx) != nil {
				break
			}
			continue
		}
		log.Info("rabbitmq connected", "broker", cfg.String(), "node", cfg.Addrs[node], "after_attempts", failures+1)
		failures = 0
		// Next time, begin with the node after this one: when this session
		// ends because its node died, the others are tried first.
		next = node + 1

		started := time.Now()
		err = session(ctx, conn)
		_ = conn.Close() // already closed when the broker went away
		if ctx.Err() != nil {
			break
		}
		log.Warn("rabbitmq session ended, reconnecting", "node", cfg.Addrs[node], "err", err)
		if time.Since(started) > time.Minute {
			bo.Reset()
		}
		if bo.Sleep(ctx) != nil {
			break
		}
	}
	return nil
}
