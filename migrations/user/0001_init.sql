-- user-svc: accounts, credentials, profile, preferences, wallet and per-order payment
-- state (docs/architecture.md §3 user-svc, §4 steps 3 and 9). The outbox and the inbox
-- (processed_events) come from migrations/common.

-- users: one account.
--   email          as registered (surrounding blanks trimmed, case kept); unique
--                  case-insensitively through users_email_key on lower(email)
--   password_hash  argon2id encoded hash ($argon2id$v=19$m=...,t=...,p=1$salt$hash);
--                  never the password
--   role           'customer', or 'admin' (only through `user-svc create-admin`)
--   created_at     set once, from clock_timestamp()
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    password_hash text NOT NULL,
    display_name text NOT NULL,
    role text NOT NULL DEFAULT 'customer',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT users_email_check CHECK (char_length(email) <= 254 AND email LIKE '%_@_%'),
    CONSTRAINT users_password_hash_check CHECK (password_hash LIKE '$argon2id$%'),
    CONSTRAINT users_display_name_check CHECK (char_length(display_name) BETWEEN 1 AND 100),
    CONSTRAINT users_role_check CHECK (role IN ('customer', 'admin'))
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- profiles: one row per user, created with it. display_name lives on users.
--   phone     E.164 or ''
--   ship_*    the shipping address; all NULL when the user has none (line1, city
--             and country are then required together)
CREATE TABLE profiles (
    user_id uuid PRIMARY KEY REFERENCES users (id),
    phone text NOT NULL DEFAULT '',
    ship_line1 text,
    ship_line2 text,
    ship_city text,
    ship_region text,
    ship_postal_code text,
    ship_country text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT profiles_phone_check CHECK (phone = '' OR phone ~ '^\+[1-9][0-9]{1,14}$'),
    CONSTRAINT profiles_address_check CHECK (
        (ship_line1 IS NULL AND ship_line2 IS NULL AND ship_city IS NULL AND ship_region IS NULL
         AND ship_postal_code IS NULL AND ship_country IS NULL)
        OR (ship_line1 IS NOT NULL AND ship_line2 IS NOT NULL AND ship_city IS NOT NULL
            AND ship_region IS NOT NULL AND ship_postal_code IS NOT NULL
            AND ship_country ~ '^[A-Z]{2}$'))
);

-- preferences: one row per user, created with it holding the defaults.
--   language  a BCP 47 tag in canonical case: 'en', 'en-US', 'zh-Hant-TW', 'es-419'
--   currency  ISO 4217; only 'USD' for now
CREATE TABLE preferences (
    user_id uuid PRIMARY KEY REFERENCES users (id),
    language text NOT NULL DEFAULT 'en',
    currency text NOT NULL DEFAULT 'USD',
    marketing_opt_in boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT preferences_language_check
        CHECK (language ~ '^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$'),
    CONSTRAINT preferences_currency_check CHECK (currency = 'USD')
);

-- wallets: one row per user, created with it. balance_cents moves only by
-- conditional updates in the same transaction as the ledger row that explains the
-- move, so balance_cents = sum(ledger.amount_cents) of the user at every commit.
CREATE TABLE wallets (
    user_id uuid PRIMARY KEY REFERENCES users (id),
    balance_cents bigint NOT NULL DEFAULT 0,
    currency text NOT NULL DEFAULT 'USD',
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT wallets_balance_check CHECK (balance_cents >= 0),
    CONSTRAINT wallets_currency_check CHECK (currency = 'USD')
);

-- ledger: every movement of a wallet, never updated or deleted.
--   seq              insertion order, the key of GetWallet's pages (newest first)
--   kind             'deposit' (> 0, idempotency_key, no order), 'payment' (<= 0, an
--                    order), 'refund' (>= 0, an order); a free order is a 0 payment
--   order_id         the order paid or refunded: at most one entry per kind and order
--   idempotency_key  the deposit's key: at most one deposit per user and key
CREATE TABLE ledger (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES wallets (user_id),
    kind text NOT NULL,
    amount_cents bigint NOT NULL,
    currency text NOT NULL,
    order_id uuid,
    idempotency_key text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ledger_kind_check CHECK (kind IN ('deposit', 'payment', 'refund')),
    CONSTRAINT ledger_amount_check CHECK (
        CASE kind WHEN 'deposit' THEN amount_cents > 0
                  WHEN 'payment' THEN amount_cents <= 0
                  ELSE amount_cents >= 0 END),
    CONSTRAINT ledger_reference_check CHECK (
        CASE kind WHEN 'deposit' THEN order_id IS NULL AND idempotency_key IS NOT NULL
                  ELSE order_id IS NOT NULL AND idempotency_key IS NULL END)
);

CREATE UNIQUE INDEX ledger_order_kind_key ON ledger (order_id, kind) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_deposit_key ON ledger (user_id, idempotency_key) WHERE kind = 'deposit';
CREATE INDEX ledger_user_page_idx ON ledger (user_id, seq DESC);

-- order_payments: what user-svc has done for each order it heard of. Every saga
-- handler reads and writes it under a per-order lock, which makes semantic duplicates
-- (the same step under a new ce_id) and out-of-order events harmless.
--   CHARGED    StockReserved debited the wallet (payment_entry_id)
--   FAILED     StockReserved charged nothing (PaymentFailed was sent)
--   REFUNDED   OrderCancelled gave a charge back (refund_entry_id)
--   TOMBSTONE  OrderCancelled came first: a later StockReserved charges nothing
--   user_id    the user named by the event (NULL when it was not a UUID)
--   amount_cents, currency   what was charged (CHARGED, REFUNDED) or asked (FAILED)
CREATE TABLE order_payments (
    order_id uuid PRIMARY KEY,
    user_id uuid,
    state text NOT NULL,
    amount_cents bigint NOT NULL DEFAULT 0,
    currency text NOT NULL DEFAULT 'USD',
    payment_entry_id uuid REFERENCES ledger (id),
    refund_entry_id uuid REFERENCES ledger (id),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT order_payments_state_check
        CHECK (state IN ('CHARGED', 'FAILED', 'REFUNDED', 'TOMBSTONE')),
    CONSTRAINT order_payments_entries_check CHECK (
        (state IN ('CHARGED', 'REFUNDED')) = (payment_entry_id IS NOT NULL)
        AND (state = 'REFUNDED') = (refund_entry_id IS NOT NULL))
);
