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
	"net"
	"net/url"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/backoff"
)

// Config locates the broker. Password is a secret: it is never logged.
type Config struct {
	Host     string
	Port     string
	VHost    string
	User     string
	Password string
	// Heartbeat detects a dead peer; zero means 10s.
	Heartbeat time.Duration
	// Name shows in the management UI's connection list.
	Name string
}

// URL returns the AMQP URL, with user, password and vhost escaped.
func (c Config) URL() string {
	u := url.URL{
		Scheme: "amqp",
		User:   url.UserPassword(c.User, c.Password),
		Host:   net.JoinHostPort(c.Host, c.Port),
		// The vhost is one path segment; "/" itself must be escaped.
		RawPath: "/" + url.PathEscape(c.VHost),
		Path:    "/" + c.VHost,
	}
	return u.String()
}

// String describes the target without the password, for logs.
func (c Config) String() string {
	return fmt.Sprintf("amqp://%s@%s/%s", c.User, net.JoinHostPort(c.Host, c.Port), c.VHost)
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

// Dial opens one connection with heartbeats (a dead peer is noticed within
// two of them), a 5s dial timeout and cfg.Name as the name the management
// UI shows.
func Dial(cfg Config) (*amqp.Connection, error) {
	heartbeat := cfg.Heartbeat
	if heartbeat <= 0 {
		heartbeat = 10 * time.Second
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.Name)
	return amqp.DialConfig(cfg.URL(), amqp.Config{
		Heartbeat:  heartbeat,
		Properties: props,
		Dial:       amqp.DefaultDial(5 * time.Second),
	})
}

// Session uses one live connection until the connection fails or ctx ends.
// Returning nil with ctx still live also ends the session and redials.
type Session func(ctx context.Context, conn *amqp.Connection) error

// Supervise dials the broker, runs session on the connection, and redials
// with capped backoff whenever the connection is lost, until ctx ends. A
// service started while RabbitMQ is down therefore waits instead of exiting.
// It returns nil once ctx is done.
func Supervise(ctx context.Context, cfg Config, log *slog.Logger, session Session) error {
	bo := backoff.New(250*time.Millisecond, 5*time.Second)
	failures := 0
	for ctx.Err() == nil {
		conn, err := Dial(cfg)
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
		log.Info("rabbitmq connected", "broker", cfg.String(), "after_attempts", failures+1)
		failures = 0

		started := time.Now()
		err = session(ctx, conn)
		_ = conn.Close() // already closed when the broker went away
		if ctx.Err() != nil {
			break
		}
		log.Warn("rabbitmq session ended, reconnecting", "err", err)
		if time.Since(started) > time.Minute {
			bo.Reset()
		}
		if bo.Sleep(ctx) != nil {
			break
		}
	}
	return nil
}
