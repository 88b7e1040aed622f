-- user-svc's SQL for one CONFIRMED order (bench/README.md, "Saga baseline"), in the
-- saga's order, statement for statement (services/user/src/user_repo.c, user_saga.c;
-- common/src/saga_batch.c, outbox.c). One run = one order, each event in a transaction
-- of its own (the fleet's batch of one: a light load).
-- (A colon inside a literal is spelled chr(58): pgbench would read ":MI" as a variable.)
\set o random(1, 9223372036854775806)
\set u random(1, 8)

-- 3. StockReserved: the order's and the wallet's locks with the inbox row, state,
-- debit + ledger row, payment state, PaymentCompleted.
BEGIN;
WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n
                 FROM unnest(ARRAY[hashtext('order:' || md5('o' || :o)::uuid::text), hashtext('wallet:' || ('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid::text)]::int4[]) AS k)
INSERT INTO processed_events (ce_id, ce_type, topic)
SELECT e.id, e.type, e.topic
  FROM unnest(ARRAY[md5('sr' || :o)::uuid], ARRAY['shop.events.v1.StockReserved'], ARRAY['inventory.events']) WITH ORDINALITY AS e(id, type, topic, i)
 WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i
ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text;
SELECT state, user_id::text, amount_cents, currency, payment_entry_id::text, refund_entry_id::text
  FROM order_payments WHERE order_id = md5('o' || :o)::uuid;
WITH w AS (UPDATE wallets SET balance_cents = balance_cents - 100, updated_at = clock_timestamp()
            WHERE user_id = ('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid AND balance_cents >= 100
           RETURNING user_id, currency)
INSERT INTO ledger (id, user_id, kind, amount_cents, currency, order_id)
SELECT md5('le' || :o)::uuid, user_id, 'payment', -100, currency, md5('o' || :o)::uuid FROM w
RETURNING id::text, kind, amount_cents, currency, COALESCE(order_id::text, ''),
          (extract(epoch FROM created_at) * 1000000)::bigint, seq;
INSERT INTO order_payments (order_id, user_id, state, amount_cents, currency, payment_entry_id, refund_entry_id)
VALUES (md5('o' || :o)::uuid, ('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid, 'CHARGED', 100, 'USD',
        md5('le' || :o)::uuid, NULL)
ON CONFLICT (order_id) DO UPDATE SET user_id = EXCLUDED.user_id, state = EXCLUDED.state,
   amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency,
   payment_entry_id = EXCLUDED.payment_entry_id, refund_entry_id = EXCLUDED.refund_entry_id,
   updated_at = clock_timestamp();
INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, traceparent, payload)
VALUES ('payment.events', md5('o' || :o), gen_random_uuid(), 'shop.events.v1.PaymentCompleted', 'user-svc',
        now(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', decode(repeat('0a', 120), 'hex'))
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
