-- order-svc: orders, their lines and saga timeline, and CreateOrder's idempotency keys
-- (docs/architecture.md §3 order-svc, §4 steps 1, 4, 5, 6, 10, 11). The outbox and the inbox
-- (processed_events) come from migrations/common.

-- orders: one order. Every status change is a conditional UPDATE ... WHERE status =
-- <the expected status>, so two saga steps (or a step and the sweeper) racing for
-- one order cannot both apply.
--   status         PENDING → CONFIRMED | CANCELLED; CONFIRMED → CANCELLED
--   cancel_reason  set exactly when status is CANCELLED
--   total_cents    Σ quantity × unit_price_cents of the lines, fixed at creation
--   created_at     set once from clock_timestamp(); with id, the listing key and the
--                  sweeper's age
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    status text NOT NULL DEFAULT 'PENDING',
    cancel_reason text,
    total_cents bigint NOT NULL,
    currency text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT orders_status_check CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    CONSTRAINT orders_cancel_reason_check CHECK (
        (status = 'CANCELLED') = (cancel_reason IS NOT NULL)
        AND (cancel_reason IS NULL
             OR cancel_reason IN ('OUT_OF_STOCK', 'PAYMENT_FAILED', 'TIMEOUT', 'USER_REQUESTED'))),
    CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0),
    CONSTRAINT orders_currency_check CHECK (currency ~ '^[A-Z]{3}$')
);

-- ListOrders: one user's orders newest first (keyset on created_at, id), and every
-- order newest first for admins.
CREATE INDEX orders_user_page_idx ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_page_idx ON orders (created_at DESC, id DESC);

-- The sweeper's scan: only PENDING orders, oldest first; stays small at rest.
CREATE INDEX orders_pending_idx ON orders (created_at) WHERE status = 'PENDING';

-- order_lines: the priced lines, in the order they were requested (line_no from 0).
-- The price is the product's when the order was created.
CREATE TABLE order_lines (
    order_id uuid NOT NULL REFERENCES orders (id),
    line_no integer NOT NULL,
    product_id uuid NOT NULL,
    quantity integer NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_lines_product_key UNIQUE (order_id, product_id),
    CONSTRAINT order_lines_line_no_check CHECK (line_no BETWEEN 0 AND 99),
    CONSTRAINT order_lines_quantity_check CHECK (quantity BETWEEN 1 AND 1000),
    CONSTRAINT order_lines_unit_price_cents_check CHECK (unit_price_cents >= 0)
);

-- order_timeline: one row per saga step the owner sees (shop.order.v1.TimelineEntry).
-- Rows are appended while the order's row is locked (by the step's UPDATE or a
-- SELECT ... FOR UPDATE), so seq counts 1, 2, 3, ... per order in commit order.
--   step    the snake_case event name ("order_created", "stock_reserved", ...)
--   status  the order's status after the step
--   detail  lower-case, human-readable; '' when there is nothing to add
CREATE TABLE order_timeline (
    order_id uuid NOT NULL REFERENCES orders (id),
    seq integer NOT NULL,
    step text NOT NULL,
    status text NOT NULL,
    detail text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (order_id, seq),
    CONSTRAINT order_timeline_status_check CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED'))
);

-- idempotency_keys: CreateOrder's Idempotency-Key per user. request_hash is the
-- SHA-256 (hex) of the canonical request (its lines, sorted by product): a repeat
-- with the same hash replays order_id, a different hash is ALREADY_EXISTS. The key
-- row is inserted first in CreateOrder's transaction, so of two concurrent creates
-- with one key the second waits on the primary key and then finds the winner; the
-- foreign key is checked at commit, after the order row exists.
CREATE TABLE idempotency_keys (
    user_id uuid NOT NULL,
    key text NOT NULL,
    order_id uuid NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    request_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, key),
    CONSTRAINT idempotency_keys_key_check CHECK (key ~ '^[ -~]{1,128}$'),
    CONSTRAINT idempotency_keys_request_hash_check CHECK (request_hash ~ '^[0-9a-f]{64}$')
);
