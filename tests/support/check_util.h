/*
 * check_util: the two pieces every Check test program would otherwise repeat: a
 * test case with its timeout (docs/style.md: one on every case), added to its suite, and
 * the main() that runs the suite and turns its failures into the exit status CTest
 * reads. Header-only, so a test binary needs an include path and nothing to link.
 */
#ifndef TESTS_CHECK_UTIL_H
#define TESTS_CHECK_UTIL_H

#include <check.h>
#include <stdlib.h>

/* check_case: a new test case named name that fails any test running longer than
 * timeout_s seconds, added to s. The suite owns the case; the result is borrowed,
 * for the caller to add tests and fixtures to (before the suite runs). */
static inline TCase *check_case(Suite *s, const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

/* check_run: runs every test of s, printing Check's normal report, and returns
 * main()'s exit status: EXIT_SUCCESS when no test failed, else EXIT_FAILURE. Takes
 * s and frees it. mode is CK_FORK_GETENV for Check's default (a process per test
 * unless the environment says CK_FORK=no), or CK_NOFORK where a library does not
 * survive fork() once started (gRPC). */
static inline int check_run(Suite *s, enum fork_status mode)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, mode);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
