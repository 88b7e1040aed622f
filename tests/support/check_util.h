/*
 * check_util: the pieces Check test programs would otherwise repeat: a test case
 * with its timeout (docs/style.md: one on every case), added to its suite, the main()
 * that runs the suite and turns its failures into the exit status CTest reads, and a
 * free local port. Header-only, so a test binary needs an include path and nothing
 * to link.
 */
#ifndef TESTS_CHECK_UTIL_H
#define TESTS_CHECK_UTIL_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* check_free_port: a 127.0.0.1 port nothing listens on right now (the kernel's pick),
 * for a server the test starts; fails the test if the kernel gives none. */
static inline int check_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ck_assert(fd >= 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

#endif
