-- What the C literal generator must carry through unchanged: backslashes, double
-- quotes, trigraph-looking ??= and ??/ sequences, tabs, semicolons inside a
-- dollar-quoted body, and UTF-8 (ünïcödé ✓).
INSERT INTO dbt_items VALUES (1, E'back\\slash "dq" ??= ??/ tab\there ünïcödé ✓');
CREATE FUNCTION dbt_answer() RETURNS int LANGUAGE sql AS $$
    SELECT 40; SELECT 42;
$$;
INSERT INTO dbt_log VALUES ('0002');
