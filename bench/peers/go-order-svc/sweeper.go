package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The sweeper (services/order/src/order_sweeper.c): every SWEEP_INTERVAL, orders
// PENDING for longer than SAGA_TIMEOUT are cancelled with reason TIMEOUT, 100 per
// transaction (FOR UPDATE SKIP LOCKED, so N instances never wait for or repeat each
// other), repeating while batches come back full; then idempotency keys older than
// IDEMPOTENCY_RETENTION are deleted, 500 per statement.

const (
	sweepBatch     = 100
	idemPurgeBatch = 500
)

type sweeper struct {
	pool      *pgxpool.Pool
	cfg       *config
	detail    string
	cancelled atomic.Int64
	purged    atomic.Int64
	stopCtx   context.Context
	stop      context.CancelFunc
	done      chan struct{}
}

func startSweeper(pool *pgxpool.Pool, cfg *config) *sweeper {
	s := &sweeper{pool: pool, cfg: cfg, done: make(chan struct{})}
	ms := cfg.SagaTimeout.Milliseconds()
	if ms%1000 == 0 {
		s.detail = fmt.Sprintf("timeout: not completed within %ds", ms/1000)
	} else {
		s.detail = fmt.Sprintf("timeout: not completed within %dms", ms)
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	go s.run()
	return s
}

func (s *sweeper) close() {
	s.stop()
	<-s.done
}

func (s *sweeper) run() {
	defer close(s.done)
	failing := false
	for {
		if err := s.sweep(); err != nil {
			if !failing {
				slog.Warn("order sweep failed, retrying", "error", err.Error())
			}
			failing = true
		} else if failing {
			slog.Info("order sweep recovered")
			failing = false
		}
		select {
		case <-s.stopCtx.Done():
			return
		case <-time.After(s.cfg.SweepInterval):
		}
	}
}

func (s *sweeper) sweep() error {
	// The sweep in hand finishes even when stop is asked (order_sweeper_stop).
	ctx := context.Background()
	for {
		claimed, cancelled := 0, 0
		err := inTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			claimed, cancelled = 0, 0
			ids, err := repoSweepClaim(ctx, tx, s.cfg.SagaTimeout.Milliseconds(), sweepBatch)
			if err != nil {
				return err
			}
			claimed = len(ids)
			for _, id := range ids {
				done, err := sagaCancel(ctx, tx, cancelReq{orderID: id, from: statusPending, reason: "TIMEOUT", detail: s.detail})
				if err != nil {
					return err
				}
				if done {
					cancelled++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if cancelled > 0 {
			s.cancelled.Add(int64(cancelled))
			slog.Info("pending orders timed out", "cancelled", cancelled)
		}
		if claimed < sweepBatch || s.stopCtx.Err() != nil {
			break
		}
	}
	for {
		n, err := repoIdemPurge(ctx, s.pool, s.cfg.IdempotencyRetention.Milliseconds(), idemPurgeBatch)
		if err != nil {
			return err
		}
		s.purged.Add(n)
		if n < idemPurgeBatch || s.stopCtx.Err() != nil {
			return nil
		}
	}
}
