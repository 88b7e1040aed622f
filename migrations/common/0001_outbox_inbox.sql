-- The transactional outbox and the inbox (docs/architecture.md §4), applied to every service
-- database before the service's own migrations (db_migrate with common_migrations).
--
-- outbox: one row per event to publish, written in the same transaction as the state
-- change it announces (outbox_enqueue). The relay publishes unpublished rows in id
-- order (so per key, in commit order of their ids) and then sets published_at.
--   id            publication order; identity, never reused
--   topic         Kafka topic, e.g. 'order.events'
--   key           Kafka message key: the order id, so an order's events stay ordered
--   ce_id         CloudEvents id (UUID), the consumers' dedup key; unique
--   ce_type       CloudEvents type, e.g. 'shop.events.v1.OrderCreated'
--   ce_source     CloudEvents source, e.g. 'order-svc'
--   ce_time       CloudEvents time: when the event happened (the writing transaction)
--   traceparent   W3C trace context of the request that caused it, or NULL
--   payload       the protobuf-encoded event message (the Kafka value)
--   created_at    when the row was written (outbox lag = now() - oldest unpublished)
--   published_at  when the broker acknowledged it; NULL while pending
--
-- Every INSERT into outbox fires NOTIFY on channel 'outbox' (payload ''), delivered
-- when the transaction commits, so nobody has to remember it. The notification only
-- wakes the relay (db_listener on 'outbox'); the relay's periodic poll of
-- outbox_unpublished_idx is the safety net.
--
-- processed_events: the inbox. A consumer inserts the event's ce_id in the same
-- transaction as the event's effect; a duplicate delivery hits the primary key
-- (ERR_CONFLICT, constraint processed_events_pkey) and is acknowledged and skipped.
--   ce_id         CloudEvents id of the consumed event
--   ce_type       its CloudEvents type (for inspection)
--   topic         the topic it was consumed from
--   processed_at  when its effect committed

CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic text NOT NULL,
    key text NOT NULL,
    ce_id uuid NOT NULL UNIQUE,
    ce_type text NOT NULL,
    ce_source text NOT NULL,
    ce_time timestamptz NOT NULL DEFAULT now(),
    traceparent text,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay's scan: only pending rows, in id order; stays small however long the
-- table grows.
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

-- Per statement, not per row: a batch insert wakes the relay once.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE processed_events (
    ce_id uuid PRIMARY KEY,
    ce_type text NOT NULL,
    topic text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
