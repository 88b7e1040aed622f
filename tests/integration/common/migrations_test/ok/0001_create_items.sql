-- Two tables: the items, and a log that each migration appends its version to, so a
-- test can tell a migration that ran twice.
CREATE TABLE dbt_items (
    id int PRIMARY KEY,
    label text NOT NULL
);
CREATE TABLE dbt_log (version text NOT NULL);
INSERT INTO dbt_log VALUES ('0001');
