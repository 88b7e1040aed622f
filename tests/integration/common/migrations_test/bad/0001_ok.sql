CREATE TABLE dbt_bad_ok (id int);
