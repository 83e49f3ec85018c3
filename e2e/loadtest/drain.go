package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/billingmsg"
)

// OrderUserID is the user_id of a run's orders for one row ("b" or "c"):
// billing stores whatever user a valid order names, so the load test's
// orders are found, counted and deleted by it. At most 64 characters.
func OrderUserID(runID, row string) string { return "loadtest-" + runID + "-" + row }

// OrderBody is the JSON body of one of the load test's orders, as a client
// sends it to the gateway and the gateway publishes it.
func OrderBody(userID string) []byte {
	return fmt.Appendf(nil, `{"user_id":%q,"number_of_items":"2","total_amount":"19.90"}`, userID)
}

// ScratchOrdersTable is the bare consumer's table: orders' columns and
// dedupe key, in the scratch database.
const ScratchOrdersTable = `CREATE TABLE orders (
	id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id      text,
	user_id         text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 64),
	number_of_items integer NOT NULL CHECK (number_of_items >= 1),
	total_amount    numeric(12,2) NOT NULL CHECK (total_amount >= 0),
	created_at      timestamptz NOT NULL DEFAULT now(),
	UNIQUE (user_id, message_id)
)`

// bareInsert writes one batch in one statement, skipping a key already
// stored: the work billing does per batch, without anything else.
const bareInsert = `INSERT INTO orders (message_id, user_id, number_of_items, total_amount)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::numeric[])
ON CONFLICT (user_id, message_id) DO NOTHING`

// BareConsumer is the drain row's reference: it consumes queue with the
// given prefetch, parses each order with billing's rules, writes batch
// orders per transaction and acknowledges them (multiple) after the
// commit, until n orders are stored. db is the scratch database.
func BareConsumer(ctx context.Context, conn *amqp.Connection, db *pgx.Conn, queue string, prefetch, batch, n int) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("loadtest: channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return fmt.Errorf("loadtest: qos: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("loadtest: consume %s: %w", queue, err)
	}
	var (
		ids, users  = make([]string, 0, batch), make([]string, 0, batch)
		items       = make([]int32, 0, batch)
		totals      = make([]string, 0, batch)
		last        uint64
		stored      int
		idle        = time.NewTimer(time.Hour)
		flushPeriod = 50 * time.Millisecond
	)
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, bareInsert, ids, users, items, totals)
			return err
		})
		if err != nil {
			return fmt.Errorf("loadtest: insert %d orders: %w", len(ids), err)
		}
		if err := ch.Ack(last, true); err != nil {
			return fmt.Errorf("loadtest: ack: %w", err)
		}
		stored += len(ids)
		ids, users, items, totals = ids[:0], users[:0], items[:0], totals[:0]
		return nil
	}
	for stored < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadtest: bare consumer stopped after %d orders: %w", stored, ctx.Err())
		case <-idle.C:
			if err := flush(); err != nil {
				return err
			}
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("loadtest: bare consumer: deliveries closed")
			}
			o, err := billingmsg.Parse(d.Body)
			if err != nil {
				return fmt.Errorf("loadtest: bare consumer: message %s: %w", d.MessageId, err)
			}
			ids = append(ids, d.MessageId)
			users = append(users, o.UserID)
			items = append(items, o.NumberOfItems)
			totals = append(totals, o.TotalAmount.String())
			last = d.DeliveryTag
			if len(ids) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
			idle.Reset(flushPeriod)
		}
	}
	return nil
}

// Drain is how fast rows appeared in a table, as CountUntil saw it.
type Drain struct {
	N       int64         // rows expected
	First   int64         // rows already there at the first sight of any
	Elapsed time.Duration // from that first sight to the last row
	Total   time.Duration // from CountUntil's start to the last row
}

// Rate is the rows per second between the first sight of rows and the
// last one: the steady pace, without the consumer's start-up, measured the
// same way for billing and for the bare consumer.
func (d Drain) Rate() float64 {
	if d.Elapsed <= 0 {
		return 0
	}
	return float64(d.N-d.First) / d.Elapsed.Seconds()
}

// CountUntil runs count every interval until it returns n or more, for at
// most timeout.
func CountUntil(ctx context.Context, n int64, interval, timeout time.Duration, count func(context.Context) (int64, error)) (Drain, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := Drain{N: n}
	start := time.Now()
	var firstAt time.Time
	for {
		c, err := count(ctx)
		if err != nil {
			return d, fmt.Errorf("loadtest: count rows: %w", err)
		}
		now := time.Now()
		if c > 0 && firstAt.IsZero() {
			firstAt, d.First = now, c
		}
		if c >= n {
			d.Elapsed, d.Total = now.Sub(firstAt), now.Sub(start)
			return d, nil
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("loadtest: %d of %d rows after %s: %w", c, n, time.Since(start).Round(time.Second), ctx.Err())
		case <-time.After(interval):
		}
	}
}

// CountOrders counts the orders of the user ids in billing_db.
func CountOrders(conn *pgx.Conn, userIDs ...string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, `SELECT count(*) FROM orders WHERE user_id = ANY($1)`, userIDs).Scan(&n)
		return n, err
	}
}

// CountRows counts the rows of the scratch orders table.
func CountRows(conn *pgx.Conn) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
		return n, err
	}
}

// DeleteOrders removes the orders of the user ids from billing_db.
func DeleteOrders(ctx context.Context, conn *pgx.Conn, userIDs ...string) (int64, error) {
	tag, err := conn.Exec(ctx, `DELETE FROM orders WHERE user_id = ANY($1)`, userIDs)
	if err != nil {
		return 0, fmt.Errorf("loadtest: delete the load test's orders: %w", err)
	}
	return tag.RowsAffected(), nil
}
