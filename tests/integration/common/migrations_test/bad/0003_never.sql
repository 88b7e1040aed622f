CREATE TABLE dbt_bad_never (id int);
