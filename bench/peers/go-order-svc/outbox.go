package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The outbox relay (common/src/outbox.c): one instance at a time holds
// pg_try_advisory_lock(OUTBOX_LOCK_KEY) on a connection of its own (the others stand
// by and retry every second); the leader scans the oldest unpublished rows in id
// order (the marks of the previous round travel with the scan: one round trip),
// produces them, waits for every acknowledgement, keeps the delivered prefix to mark,
// and sleeps on LISTEN outbox (or 500 ms) when a scan came back short. Rows published
// over an hour ago are deleted, 500 at a time, every 10 s.

const (
	relayBatch     = 256
	relayPoll      = 500 * time.Millisecond
	relayRetention = time.Hour
	relayPurgeEach = 10 * time.Second
	relayPurgeMax  = 500
)

type relay struct {
	url      string
	producer *kgo.Client
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	wake     chan struct{}
}

func startRelay(url string, producer *kgo.Client) *relay {
	r := &relay{url: url, producer: producer, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.listen()
	go r.run()
	return r
}

func (r *relay) stop() {
	r.cancel()
	<-r.done
}

func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "order-svc"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// listen turns NOTIFY outbox into wake-ups (and one on every reconnect: a
// notification may have been lost meanwhile).
func (r *relay) listen() {
	for r.ctx.Err() == nil {
		conn, err := connect(r.ctx, r.url)
		if err == nil {
			if _, err = conn.Exec(r.ctx, "LISTEN outbox"); err == nil {
				r.poke()
				for err == nil {
					_, err = conn.WaitForNotification(r.ctx)
					if err == nil {
						r.poke()
					}
				}
			}
			conn.Close(context.Background())
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (r *relay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *relay) wait(d time.Duration, wake bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			return
		case <-r.wake:
			if wake {
				return
			}
		}
	}
}

func (r *relay) run() {
	defer close(r.done)
	var conn *pgx.Conn
	var marks []int64
	backoff := time.Duration(0)
	nextPurge := time.Now()
	resign := func(healthy bool) {
		if conn == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if healthy {
			if len(marks) > 0 {
				_, _ = conn.Exec(ctx, "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND published_at IS NULL", marks)
			}
			_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1::bigint)", outboxLockKey)
		}
		marks = nil
		conn.Close(ctx)
		conn = nil
		slog.Info("outbox relay released the lock", "lock_key", outboxLockKey)
	}
	for r.ctx.Err() == nil {
		if conn == nil {
			c, err := connect(r.ctx, r.url)
			if err != nil {
				r.wait(time.Second, false)
				continue
			}
			var got bool
			_, err = c.Exec(r.ctx, "SELECT set_config('synchronous_commit', 'off', false),"+
				" set_config('enable_bitmapscan', 'off', false), set_config('enable_seqscan', 'off', false)")
			if err == nil {
				err = c.QueryRow(r.ctx, "SELECT pg_try_advisory_lock($1::bigint)", outboxLockKey).Scan(&got)
			}
			if err != nil || !got {
				c.Close(context.Background())
				r.wait(time.Second, false)
				continue
			}
			conn = c
			slog.Info("outbox relay acquired the lock", "lock_key", outboxLockKey)
		}
		n, err := r.round(conn, &marks)
		if err != nil {
			if conn.IsClosed() || isConnErr(err) {
				resign(false)
			}
			if r.ctx.Err() != nil {
				break
			}
			slog.Warn("outbox relay failing, retrying", "error", err.Error())
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.wait(backoff, false)
			continue
		}
		backoff = 0
		if time.Now().After(nextPurge) {
			nextPurge = time.Now().Add(relayPurgeEach)
			for r.ctx.Err() == nil {
				tag, err := conn.Exec(r.ctx, "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL"+
					" AND published_at < now() - $1::bigint * interval '1 millisecond' ORDER BY id LIMIT $2)",
					relayRetention.Milliseconds(), relayPurgeMax)
				if err != nil || tag.RowsAffected() < relayPurgeMax {
					break
				}
			}
		}
		if n < relayBatch {
			r.wait(relayPoll, true)
		}
	}
	resign(conn != nil && !conn.IsClosed())
}

// round: marks the last round's rows and scans the next ones in one statement,
// produces them and waits for the acknowledgements; the delivered prefix becomes the
// marks of the next round.
func (r *relay) round(conn *pgx.Conn, marks *[]int64) (int, error) {
	ctx := r.ctx
	m := *marks
	if m == nil {
		m = []int64{}
	}
	rows, err := conn.Query(ctx, "WITH marked AS (UPDATE outbox SET published_at = now()"+
		" WHERE id = ANY($2::bigint[]) AND published_at IS NULL)"+
		" SELECT id, topic, key, ce_id::text, ce_type, ce_source,"+
		" to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"+
		" traceparent, payload"+
		" FROM outbox WHERE published_at IS NULL AND id <> ALL($2::bigint[])"+
		" ORDER BY id LIMIT $1", relayBatch, m)
	if err != nil {
		return 0, err
	}
	var ids []int64
	var recs []*kgo.Record
	for rows.Next() {
		var id int64
		var topic, key, ceID, ceType, ceSource, ceTime string
		var tp *string
		var payload []byte
		if err := rows.Scan(&id, &topic, &key, &ceID, &ceType, &ceSource, &ceTime, &tp, &payload); err != nil {
			rows.Close()
			return 0, err
		}
		hs := []kgo.RecordHeader{
			{Key: "ce_id", Value: []byte(ceID)}, {Key: "ce_type", Value: []byte(ceType)},
			{Key: "ce_source", Value: []byte(ceSource)}, {Key: "ce_time", Value: []byte(ceTime)},
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "content-type", Value: []byte("application/protobuf")},
		}
		if tp != nil && traceparentValid(*tp) {
			hs = append(hs, kgo.RecordHeader{Key: "traceparent", Value: []byte(*tp)})
		}
		ids = append(ids, id)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: payload, Headers: hs})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	*marks = nil
	if len(recs) == 0 {
		return 0, nil
	}
	results := r.producer.ProduceSync(context.Background(), recs...)
	ok := 0
	for _, res := range results {
		if res.Err != nil {
			break
		}
		ok++
	}
	*marks = append([]int64(nil), ids[:ok]...)
	if ok < len(recs) {
		return len(recs), results[ok].Err
	}
	return len(recs), nil
}
