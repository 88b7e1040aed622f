-- product-svc: catalog, inventory, reservations and per-order saga state
-- (docs/architecture.md §3 product-svc, §4 steps 2, 7, 8).

-- Trigram indexes for ListProducts' text filter (case-insensitive substring on sku,
-- name and description). pg_trgm is a trusted extension: the database owner may
-- create it without superuser rights.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- products: the catalog. Rows are never deleted (archiving sets active = false) so
-- that old orders can still show what they bought.
--   created_at  set once at insert from clock_timestamp(); with id it is the
--               pagination key (products_page_idx). Never updated.
CREATE TABLE products (
    id uuid PRIMARY KEY,
    sku text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    price_cents bigint NOT NULL,
    currency text NOT NULL DEFAULT 'USD',
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_sku_check CHECK (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT products_name_check CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT products_description_check CHECK (char_length(description) <= 5000),
    CONSTRAINT products_price_cents_check CHECK (price_cents BETWEEN 0 AND 1000000000),
    CONSTRAINT products_currency_check CHECK (currency ~ '^[A-Z]{3}$')
);

-- Keyset pagination: WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id.
CREATE INDEX products_page_idx ON products (created_at, id);

-- The text filter: sku ILIKE '%q%' OR name ILIKE ... OR description ILIKE ...
-- (a bitmap OR over this one index; patterns under three characters scan).
CREATE INDEX products_search_idx ON products
    USING gin (sku gin_trgm_ops, name gin_trgm_ops, description gin_trgm_ops);

-- inventory: one row per product, created with it.
--   available  units new orders can reserve
--   reserved   units held for orders whose saga is still running (0 at rest)
--   sold       units of confirmed orders
--   added      net units ever added by SetStock / AdjustStock
-- The saga only moves units between the first three, so stock is conserved by
-- construction and the database refuses any statement that would break it.
CREATE TABLE inventory (
    product_id uuid PRIMARY KEY REFERENCES products (id),
    available bigint NOT NULL DEFAULT 0,
    reserved bigint NOT NULL DEFAULT 0,
    sold bigint NOT NULL DEFAULT 0,
    added bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_available_check CHECK (available >= 0),
    CONSTRAINT inventory_reserved_check CHECK (reserved >= 0),
    CONSTRAINT inventory_sold_check CHECK (sold >= 0),
    CONSTRAINT inventory_conserved_check CHECK (available + reserved + sold = added)
);

-- reservations: the units one order holds of one product.
--   RESERVED   held (inventory.reserved)          OrderCreated
--   COMMITTED  sold (inventory.sold)              OrderConfirmed
--   RELEASED   given back (inventory.available)   OrderCancelled
CREATE TABLE reservations (
    order_id uuid NOT NULL,
    product_id uuid NOT NULL REFERENCES products (id),
    quantity bigint NOT NULL,
    state text NOT NULL DEFAULT 'RESERVED',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id),
    CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    CONSTRAINT reservations_state_check CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED'))
);

CREATE INDEX reservations_product_idx ON reservations (product_id) WHERE state = 'RESERVED';

-- order_states: what product-svc has done for each order it heard of. Every saga
-- handler reads and updates it under a per-order lock, which makes semantic
-- duplicates (the same step under a new ce_id) and out-of-order events harmless.
--   RESERVED   OrderCreated reserved every line
--   REJECTED   OrderCreated reserved nothing (StockRejected)
--   COMMITTED  OrderConfirmed turned the reservation into sales
--   RELEASED   OrderCancelled handled after OrderCreated: nothing is held any more
--   TOMBSTONE  OrderCancelled came first: a later OrderCreated is rejected
CREATE TABLE order_states (
    order_id uuid PRIMARY KEY,
    state text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_states_state_check
        CHECK (state IN ('RESERVED', 'REJECTED', 'COMMITTED', 'RELEASED', 'TOMBSTONE'))
);
