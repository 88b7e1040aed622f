-- The rows the pgbench scripts work on, in the schema bench/bench.py made for them
-- (search_path): 8 products with stock, 8 users with money. :svc is order, product
-- or user; ids are 00000000-0000-4000-8000-00000000000N, as the scripts build them.
\if :{?svc}
\else
\echo 'seed.sql needs -v svc=order|product|user'
\quit
\endif
SELECT :'svc' = 'product' AS is_product, :'svc' = 'user' AS is_user \gset
\if :is_product
INSERT INTO products (id, sku, name, price_cents)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'PGB-' || g, 'bench ' || g, 100
  FROM generate_series(1, 8) g;
INSERT INTO inventory (product_id, available, added)
SELECT id, 1000000000000, 1000000000000 FROM products;
\endif
\if :is_user
INSERT INTO users (id, email, password_hash, display_name)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'pgb' || g || '@example.com',
       '$argon2id$v=19$m=19456,t=2,p=1$bench$bench', 'bench ' || g
  FROM generate_series(1, 8) g;
INSERT INTO wallets (user_id, balance_cents) SELECT id, 1000000000000000 FROM users;
\endif
