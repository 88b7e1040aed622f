-- product-svc's SQL for one CONFIRMED order (bench/README.md, "Saga baseline"), in the
-- saga's order, statement for statement (services/product/src/product_repo.c,
-- product_rpc.c, product_saga.c; common/src/saga_batch.c, outbox.c). One run = one order,
-- each event in a transaction of its own (the fleet's batch of one: a light load).
-- (A colon inside a literal is spelled chr(58): pgbench would read ":MI" as a variable.)
\set o random(1, 9223372036854775806)
\set p random(1, 8)

-- CreateOrder prices its lines through BatchGetProducts (a read).
SELECT id::text, sku, name, description, currency, price_cents, active,
       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us,
       (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us
  FROM products WHERE id = ANY(ARRAY[('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid]);

-- 2. OrderCreated: the order's and the product's locks with the inbox row, the state
-- with the inventory rows locked, reserve (units and reservation rows), state,
-- StockReserved.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text), hashtext('inventory:' || ('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('oc' || :o)::uuid], ARRAY['shop.events.v1.OrderCreated'], ARRAY['order.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
WITH i AS (SELECT product_id::text AS id, available FROM inventory
            WHERE product_id = ANY(ARRAY[('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid]) ORDER BY product_id FOR UPDATE)
SELECT (SELECT state FROM order_states WHERE order_id = md5('o' || :o)::uuid), i.id, i.available
  FROM (VALUES (1)) AS one (x) LEFT JOIN i ON true ORDER BY i.id;
WITH u AS (UPDATE inventory i SET available = i.available - l.q, reserved = i.reserved + l.q, updated_at = now()
             FROM unnest(ARRAY[('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid], '{1}'::bigint[]) AS l(p, q)
            WHERE i.product_id = l.p AND i.available >= l.q RETURNING i.product_id, l.q)
INSERT INTO reservations (order_id, product_id, quantity) SELECT md5('o' || :o)::uuid, product_id, q FROM u;
INSERT INTO order_states (order_id, state) VALUES (md5('o' || :o)::uuid, 'RESERVED')
ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now();
INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, traceparent, payload)
VALUES ('inventory.events', md5('o' || :o), gen_random_uuid(), 'shop.events.v1.StockReserved', 'product-svc',
        now(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', decode(repeat('0a', 80), 'hex'))
RETURNING id AS ob \gset
COMMIT;
SELECT id, topic, key, ce_id::text, ce_type, ce_source,
       to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"'), traceparent, payload,
       (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint
  FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 256;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY[:ob]::bigint[]);
COMMIT;

-- 7. OrderConfirmed: the locks with the inbox row, state, reserved → sold, state,
-- StockCommitted.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text), hashtext('inventory:' || ('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('ok' || :o)::uuid], ARRAY['shop.events.v1.OrderConfirmed'], ARRAY['order.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
SELECT state FROM order_states WHERE order_id = md5('o' || :o)::uuid;
WITH r AS (UPDATE reservations SET state = 'COMMITTED', updated_at = now()
            WHERE order_id = md5('o' || :o)::uuid AND state = 'RESERVED' RETURNING product_id, quantity)
UPDATE inventory i SET reserved = i.reserved - r.quantity, sold = i.sold + r.quantity, updated_at = now()
  FROM r WHERE i.product_id = r.product_id RETURNING i.product_id::text, r.quantity;
INSERT INTO order_states (order_id, state) VALUES (md5('o' || :o)::uuid, 'COMMITTED')
ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now();
INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, traceparent, payload)
VALUES ('inventory.events', md5('o' || :o), gen_random_uuid(), 'shop.events.v1.StockCommitted', 'product-svc',
        now(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', decode(repeat('0a', 60), 'hex'))
RETURNING id AS ob \gset
COMMIT;
SELECT id, topic, key, ce_id::text, ce_type, ce_source,
       to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"'), traceparent, payload,
       (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint
  FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 256;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY[:ob]::bigint[]);
COMMIT;
