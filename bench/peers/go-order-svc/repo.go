package main

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The SQL of services/order/src/order_repo.c, statement for statement, so both
// programs put the same load on PostgreSQL.

type orderLine struct {
	ProductID      string
	Quantity       int32
	UnitPriceCents int64
}

type orderStep struct {
	Step, Status, Detail string
	AtUs                 int64
}

type orderRow struct {
	ID, UserID, Status, CancelReason, Currency string
	TotalCents, CreatedUs, UpdatedUs           int64
	Lines                                      []orderLine
	Timeline                                   []orderStep
}

const orderCols = "id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents," +
	" (extract(epoch FROM created_at) * 1000000)::bigint," +
	" (extract(epoch FROM updated_at) * 1000000)::bigint"

func orderHash(param string) string {
	return "encode(sha256(convert_to(" + param + ", 'UTF8')), 'hex')"
}

func scanOrder(r pgx.Row, o *orderRow, extra ...any) error {
	return r.Scan(append([]any{&o.ID, &o.UserID, &o.Status, &o.CancelReason, &o.Currency,
		&o.TotalCents, &o.CreatedUs, &o.UpdatedUs}, extra...)...)
}

var errNotFound = clientErr(5 /* NOT_FOUND */, "order not found")

var snapshot = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

func linesOf(ctx context.Context, tx pgx.Tx, rows []*orderRow) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]string, len(rows))
	byID := make(map[string]*orderRow, len(rows))
	for i, o := range rows {
		ids[i] = o.ID
		byID[o.ID] = o
	}
	r, err := tx.Query(ctx, "SELECT order_id::text, product_id::text, quantity, unit_price_cents"+
		" FROM order_lines WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, line_no", ids)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		var id string
		var l orderLine
		if err := r.Scan(&id, &l.ProductID, &l.Quantity, &l.UnitPriceCents); err != nil {
			return err
		}
		if o := byID[id]; o != nil {
			o.Lines = append(o.Lines, l)
		}
	}
	return r.Err()
}

func timelineOf(ctx context.Context, tx pgx.Tx, o *orderRow) error {
	r, err := tx.Query(ctx, "SELECT step, status, detail, (extract(epoch FROM at) * 1000000)::bigint"+
		" FROM order_timeline WHERE order_id = $1 ORDER BY seq", o.ID)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		var s orderStep
		if err := r.Scan(&s.Step, &s.Status, &s.Detail, &s.AtUs); err != nil {
			return err
		}
		o.Timeline = append(o.Timeline, s)
	}
	return r.Err()
}

func repoGet(ctx context.Context, pool *pgxpool.Pool, id string, withTimeline bool) (*orderRow, error) {
	o := &orderRow{}
	err := pgx.BeginTxFunc(ctx, pool, snapshot, func(tx pgx.Tx) error {
		if err := scanOrder(tx.QueryRow(ctx, "SELECT "+orderCols+" FROM orders WHERE id = $1", id), o); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return errNotFound
			}
			return err
		}
		if err := linesOf(ctx, tx, []*orderRow{o}); err != nil {
			return err
		}
		if withTimeline {
			return timelineOf(ctx, tx, o)
		}
		return nil
	})
	return o, err
}

type pageQuery struct {
	userID  *string
	afterUs *int64
	afterID *string
	limit   int
}

func repoList(ctx context.Context, pool *pgxpool.Pool, q pageQuery) ([]*orderRow, error) {
	const sql = "SELECT " + orderCols + " FROM orders" +
		" WHERE ($1::uuid IS NULL OR user_id = $1::uuid)" +
		" AND ($2::bigint IS NULL OR (created_at, id) <" +
		" (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::uuid))" +
		" ORDER BY created_at DESC, id DESC LIMIT $4"
	var out []*orderRow
	err := pgx.BeginTxFunc(ctx, pool, snapshot, func(tx pgx.Tx) error {
		out = out[:0]
		r, err := tx.Query(ctx, sql, q.userID, q.afterUs, q.afterID, int64(q.limit))
		if err != nil {
			return err
		}
		for r.Next() {
			o := &orderRow{}
			if err := scanOrder(r, o); err != nil {
				r.Close()
				return err
			}
			out = append(out, o)
		}
		r.Close()
		if r.Err() != nil {
			return r.Err()
		}
		return linesOf(ctx, tx, out)
	})
	return out, err
}

// repoIdemFind: the order a key made ("" if unused) and whether canon hashes alike.
func repoIdemFind(ctx context.Context, pool *pgxpool.Pool, userID, key, canon string) (string, bool, error) {
	var id string
	var same bool
	err := pool.QueryRow(ctx, "SELECT order_id::text, request_hash = "+orderHash("$3::text")+
		" FROM idempotency_keys WHERE user_id = $1 AND key = $2", userID, key, canon).Scan(&id, &same)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return id, same, err
}

func pgArray(xs []string) string { return "{" + strings.Join(xs, ",") + "}" }

func repoCreate(ctx context.Context, tx pgx.Tx, o *orderRow, key, canon string) (bool, error) {
	const sql = "WITH k AS (INSERT INTO idempotency_keys (user_id, key, order_id, request_hash)" +
		" VALUES ($2::uuid, $8, $1::uuid, encode(sha256(convert_to($9::text, 'UTF8')), 'hex'))" +
		" ON CONFLICT DO NOTHING RETURNING order_id)," +
		" now AS (SELECT clock_timestamp() AS at)," +
		" o AS (INSERT INTO orders (id, user_id, total_cents, currency, created_at, updated_at)" +
		" SELECT $1::uuid, $2::uuid, $3::bigint, $4, at, at FROM now, k" +
		" RETURNING " + orderCols + ", created_at)," +
		" l AS (INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents)" +
		" SELECT $1, n - 1, p, q, c" +
		" FROM unnest($5::uuid[], $6::integer[], $7::bigint[]) WITH ORDINALITY AS l(p, q, c, n)" +
		" WHERE EXISTS (SELECT 1 FROM k))," +
		" t AS (INSERT INTO order_timeline (order_id, seq, step, status, detail, at)" +
		" SELECT $1, 1, 'order_created', 'PENDING', '', created_at FROM o)" +
		" SELECT * FROM o"
	pids := make([]string, len(o.Lines))
	qs := make([]int32, len(o.Lines))
	ps := make([]int64, len(o.Lines))
	for i, l := range o.Lines {
		pids[i], qs[i], ps[i] = l.ProductID, l.Quantity, l.UnitPriceCents
	}
	var stored orderRow
	var createdAt any
	err := scanOrder(tx.QueryRow(ctx, sql, o.ID, o.UserID, o.TotalCents, o.Currency, pids, qs, ps, key, canon),
		&stored, &createdAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	o.Status, o.CancelReason, o.CreatedUs, o.UpdatedUs = stored.Status, stored.CancelReason, stored.CreatedUs, stored.UpdatedUs
	return true, nil
}

func repoLock(ctx context.Context, tx pgx.Tx, id string) (*orderRow, error) {
	o := &orderRow{}
	err := scanOrder(tx.QueryRow(ctx, "SELECT "+orderCols+" FROM orders WHERE id = $1 FOR UPDATE", id), o)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return o, err
}

// repoTransition: nil (and nothing changed) unless the order was in `from`.
func repoTransition(ctx context.Context, tx pgx.Tx, id, from, to string, reason *string) (*orderRow, error) {
	const sql = "WITH u AS (UPDATE orders SET status = $3, cancel_reason = $4," +
		" updated_at = clock_timestamp()" +
		" WHERE id = $1 AND status = $2 RETURNING " + orderCols + ", id AS oid)" +
		" SELECT u.*, l.product_id::text, l.quantity, l.unit_price_cents" +
		" FROM u LEFT JOIN order_lines l ON l.order_id = u.oid ORDER BY l.line_no"
	r, err := tx.Query(ctx, sql, id, from, to, reason)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var o *orderRow
	for r.Next() {
		var row orderRow
		var oid any
		var pid *string
		var q *int32
		var p *int64
		if err := scanOrder(r, &row, &oid, &pid, &q, &p); err != nil {
			return nil, err
		}
		if o == nil {
			o = &row
		}
		if pid != nil {
			o.Lines = append(o.Lines, orderLine{*pid, *q, *p})
		}
	}
	return o, r.Err()
}

type orderNote struct{ step, detail string }

func repoTimelineAdd(ctx context.Context, tx pgx.Tx, orderID string, notes ...orderNote) error {
	const one = "INSERT INTO order_timeline (order_id, seq, step, status, detail)" +
		" SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t" +
		" WHERE t.order_id = o.id), 0) + 1, $2, o.status, $3" +
		" FROM orders o WHERE o.id = $1" +
		" ON CONFLICT (order_id, step) DO NOTHING"
	const two = "INSERT INTO order_timeline (order_id, seq, step, status, detail)" +
		" SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t" +
		" WHERE t.order_id = o.id), 0) + row_number() OVER (ORDER BY s.n), s.step, o.status," +
		" s.detail" +
		" FROM orders o, (VALUES ($2, $3, 1), ($4, $5, 2)) AS s(step, detail, n)" +
		" WHERE o.id = $1 AND NOT EXISTS (SELECT 1 FROM order_timeline t" +
		" WHERE t.order_id = o.id AND t.step = s.step) ORDER BY s.n" +
		" ON CONFLICT (order_id, step) DO NOTHING"
	var err error
	if len(notes) == 1 {
		_, err = tx.Exec(ctx, one, orderID, notes[0].step, notes[0].detail)
	} else {
		_, err = tx.Exec(ctx, two, orderID, notes[0].step, notes[0].detail, notes[1].step, notes[1].detail)
	}
	return err
}

func repoSweepClaim(ctx context.Context, tx pgx.Tx, timeoutMs int64, limit int) ([]string, error) {
	r, err := tx.Query(ctx, "SELECT id::text FROM orders WHERE status = 'PENDING'"+
		" AND created_at < clock_timestamp() - $1::bigint * interval '1 millisecond'"+
		" ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED", timeoutMs, int64(limit))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(r, pgx.RowTo[string])
}

func repoIdemPurge(ctx context.Context, pool *pgxpool.Pool, retentionMs int64, limit int) (int64, error) {
	tag, err := pool.Exec(ctx, "DELETE FROM idempotency_keys WHERE (user_id, key) IN ("+
		"SELECT user_id, key FROM idempotency_keys"+
		" WHERE created_at < clock_timestamp() - $1::bigint * interval '1 millisecond'"+
		" ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)", retentionMs, int64(limit))
	return tag.RowsAffected(), err
}
