-- The first statement works, the second fails: the whole file must roll back.
CREATE TABLE dbt_bad_half (id int);
SELECT * FROM dbt_no_such_table;
