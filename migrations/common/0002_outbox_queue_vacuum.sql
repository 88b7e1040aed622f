-- The outbox is a queue: every row is inserted, marked published milliseconds later and
-- deleted an hour after that. Each mark leaves the row's old version in
-- outbox_unpublished_idx until VACUUM removes it, and the relay's scan walks past those
-- entries on every round; with the default thresholds (20 % of the table, which holds an
-- hour of events) tens of thousands of them pile up between two vacuums. Vacuum and
-- analyze it after every 2000 changed rows instead, whatever its size: each pass is
-- cheap (the visibility map skips the settled pages), and fresh statistics also replace
-- plans that were chosen while the table was still empty (bench/README.md, "Where
-- PostgreSQL's time goes").
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 2000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000
);
