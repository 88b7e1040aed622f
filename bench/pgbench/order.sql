-- order-svc's SQL for one CONFIRMED order (bench/README.md, "Saga baseline"), in the
-- saga's order, statement for statement (services/order/src/order_repo.c, order_rpc.c,
-- order_saga.c; common/src/saga_batch.c, outbox.c). One run of this script = one order,
-- each event in a transaction of its own (the fleet's batch of one: a light load).
-- :o names the order (md5 → uuid), :u the user, :p the product.
-- (A colon inside a literal is spelled chr(58): pgbench would read ":MI" as a variable.)
\set o random(1, 9223372036854775806)
\set u random(1, 8)
\set p random(1, 8)

-- 1. CreateOrder: the Idempotency-Key lookup (a read outside the transaction) ...
SELECT order_id::text, request_hash = encode(sha256(convert_to('canon' || :p, 'UTF8')), 'hex')
  FROM idempotency_keys
 WHERE user_id = ('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid AND key = 'k' || :o;
-- ... then the key, the order with its line and first timeline row (one statement), and
-- OrderCreated.
BEGIN;
WITH k AS (INSERT INTO idempotency_keys (user_id, key, order_id, request_hash)
           VALUES (('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid, 'k' || :o, md5('o' || :o)::uuid,
                   encode(sha256(convert_to('canon' || :p, 'UTF8')), 'hex'))
           ON CONFLICT DO NOTHING RETURNING order_id),
 now AS (SELECT clock_timestamp() AS at),
 o AS (INSERT INTO orders (id, user_id, total_cents, currency, created_at, updated_at)
       SELECT md5('o' || :o)::uuid, ('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid, 100, 'USD', at, at FROM now, k
       RETURNING id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents,
                 (extract(epoch FROM created_at) * 1000000)::bigint,
                 (extract(epoch FROM updated_at) * 1000000)::bigint, created_at),
 l AS (INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents)
       SELECT md5('o' || :o)::uuid, n - 1, p, q, c
         FROM unnest(ARRAY[('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid], '{1}'::integer[], '{100}'::bigint[])
              WITH ORDINALITY AS l(p, q, c, n) WHERE EXISTS (SELECT 1 FROM k)),
 t AS (INSERT INTO order_timeline (order_id, seq, step, status, detail, at)
       SELECT md5('o' || :o)::uuid, 1, 'order_created', 'PENDING', '', created_at FROM o)
SELECT * FROM o;
INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, traceparent, payload)
VALUES ('order.events', md5('o' || :o), gen_random_uuid(), 'shop.events.v1.OrderCreated', 'order-svc',
        now(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', decode(repeat('0a', 120), 'hex'))
RETURNING id AS ob \gset
COMMIT;
-- The relay: scan, publish (Kafka, not here), mark.
SELECT id, topic, key, ce_id::text, ce_type, ce_source,
       to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"'), traceparent, payload,
       (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint
  FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 256;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY[:ob]::bigint[]);
COMMIT;

-- 4. StockReserved: lock and inbox, lock the order's row, a timeline row.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('sr' || :o)::uuid], ARRAY['shop.events.v1.StockReserved'], ARRAY['inventory.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
SELECT id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents,
       (extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint
  FROM orders WHERE id = md5('o' || :o)::uuid FOR UPDATE;
INSERT INTO order_timeline (order_id, seq, step, status, detail)
SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t WHERE t.order_id = o.id), 0) + 1,
       'stock_reserved', o.status, 'stock reserved for every line'
  FROM orders o WHERE o.id = md5('o' || :o)::uuid;
COMMIT;

-- 5. PaymentCompleted: lock and inbox, PENDING → CONFIRMED with the lines, OrderConfirmed,
-- two timeline rows.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('pc' || :o)::uuid], ARRAY['shop.events.v1.PaymentCompleted'], ARRAY['payment.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
WITH u AS (UPDATE orders SET status = 'CONFIRMED', cancel_reason = NULL, updated_at = clock_timestamp()
            WHERE id = md5('o' || :o)::uuid AND status = 'PENDING'
           RETURNING id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents,
                     (extract(epoch FROM created_at) * 1000000)::bigint,
                     (extract(epoch FROM updated_at) * 1000000)::bigint, id AS oid)
SELECT u.*, l.product_id::text, l.quantity, l.unit_price_cents
  FROM u LEFT JOIN order_lines l ON l.order_id = u.oid ORDER BY l.line_no;
INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, traceparent, payload)
VALUES ('order.events', md5('o' || :o), gen_random_uuid(), 'shop.events.v1.OrderConfirmed', 'order-svc',
        now(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', decode(repeat('0a', 120), 'hex'))
RETURNING id AS ob \gset
INSERT INTO order_timeline (order_id, seq, step, status, detail)
SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t WHERE t.order_id = o.id), 0) + s.n,
       s.step, o.status, s.detail
  FROM orders o, (VALUES ('payment_completed', 'wallet charged 100 cents', 1), ('order_confirmed', '', 2))
       AS s(step, detail, n)
 WHERE o.id = md5('o' || :o)::uuid ORDER BY s.n;
COMMIT;
SELECT id, topic, key, ce_id::text, ce_type, ce_source,
       to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"'), traceparent, payload,
       (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint
  FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 256;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY[:ob]::bigint[]);
COMMIT;

-- 7. StockCommitted: lock and inbox, lock the order's row, a timeline row.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('sc' || :o)::uuid], ARRAY['shop.events.v1.StockCommitted'], ARRAY['inventory.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
SELECT id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents,
       (extract(epoch FROM created_at) * 1000000)::bigint, (extract(epoch FROM updated_at) * 1000000)::bigint
  FROM orders WHERE id = md5('o' || :o)::uuid FOR UPDATE;
INSERT INTO order_timeline (order_id, seq, step, status, detail)
SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t WHERE t.order_id = o.id), 0) + 1,
       'stock_committed', o.status, 'reserved stock sold'
  FROM orders o WHERE o.id = md5('o' || :o)::uuid;
COMMIT;
