-- order_timeline: one row per saga step (docs/architecture.md §3), enforced by the database.
--
-- A step is the snake_case name of the event that makes it ("order_created",
-- "stock_reserved", "stock_rejected", "payment_completed", "payment_failed",
-- "order_confirmed", "order_cancelled", "stock_committed", "stock_released",
-- "payment_refunded"). The saga takes each step at most once per order: every
-- participant emits each of its events at most once per order (per-order state), and
-- order-svc makes each transition once (conditional UPDATE). An event that no longer
-- applies is recorded under its own step with "ignored" in the detail, and is still
-- the only one of its type. So the only second row a step can get is the same event
-- again under a new ce_id (a replay tool, a retrying foreign producer), which the
-- inbox cannot recognize: order_repo_timeline_add skips it (ON CONFLICT (order_id,
-- step) DO NOTHING), and the owner no longer sees "wallet refunded" twice for one
-- refund.
--
-- Rows that earlier versions appended twice are removed first: per (order, step) the
-- first row stays (the lowest seq: the step as it happened; the later ones were
-- replays or their "ignored" notes), and each such order's remaining rows are
-- renumbered 1, 2, 3, ... in their order, so seq stays dense.

DELETE FROM order_timeline t
    USING order_timeline f
    WHERE f.order_id = t.order_id AND f.step = t.step AND f.seq < t.seq;

-- Renumbered in two passes through negative numbers, so that no row takes a seq
-- another row still holds: (order_id, seq) is checked row by row.
WITH r AS (
    SELECT order_id, seq, row_number() OVER (PARTITION BY order_id ORDER BY seq) AS n
    FROM order_timeline
)
UPDATE order_timeline t SET seq = -r.n
    FROM r
    WHERE t.order_id = r.order_id AND t.seq = r.seq AND r.n <> r.seq;
UPDATE order_timeline SET seq = -seq WHERE seq < 0;

ALTER TABLE order_timeline ADD CONSTRAINT order_timeline_step_key UNIQUE (order_id, step);
