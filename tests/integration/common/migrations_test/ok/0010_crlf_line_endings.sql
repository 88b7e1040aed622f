-- CRLF line endings (embedded as LF), and a version with leading zeros after a gap:
-- 0010 is version 10.
ALTER TABLE dbt_items ADD COLUMN note text;
INSERT INTO dbt_log VALUES ('0010');
