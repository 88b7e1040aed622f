# Tests of common/'s PostgreSQL layer (db_*.c) against the test stack's real PostgreSQL
# (PRODUCT_DATABASE_URL). Each test works in a schema of its own (test_db_support.h).
add_library(test_db_support STATIC integration/common/test_db_support.c)
target_include_directories(test_db_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/integration/common)
target_link_libraries(test_db_support PUBLIC PkgConfig::PQ PkgConfig::CHECK)

shop_test(test_db SOURCES integration/common/test_db.c
          LIBS common test_db_support LABELS "integration;common")
shop_test(test_db_listen SOURCES integration/common/test_db_listen.c
          LIBS common test_db_support LABELS "integration;common")

# The migration runner and the embedding generator, with fixture sets built into the
# test binary exactly as a service embeds migrations/<svc>.
set(db_fixtures "${CMAKE_CURRENT_SOURCE_DIR}/integration/common/migrations_test")
shop_test(test_db_migrate SOURCES integration/common/test_db_migrate.c
          LIBS common test_db_support LABELS "integration;common")
shop_embed_migrations(test_db_migrate dbtest "${db_fixtures}/ok")
shop_embed_migrations(test_db_migrate dbtest_bad "${db_fixtures}/bad")
target_compile_definitions(test_db_migrate PRIVATE TDB_FIXTURE_DIR="${db_fixtures}")

# Prepared statements: reused per connection, bounded, and surviving a PostgreSQL
# restart (the test restarts the stack's product cluster through stack.sh).
shop_test(test_db_stmt SOURCES integration/common/test_db_stmt.c
          LIBS common test_db_support LABELS "integration;common")
target_compile_definitions(test_db_stmt PRIVATE
                           STACK_SH="${CMAKE_SOURCE_DIR}/deploy/local/stack.sh")
