/*
 * capture_stdout: runs code with file descriptor 1 redirected into an unlinked
 * temporary file and hands back what was written, for tests of the JSON log (log.c
 * writes with write(2) on STDOUT_FILENO, so stdio-level redirection would miss it).
 * The file is opened O_APPEND, as a log file would be, so concurrent writes land
 * whole and in sequence (a memfd does not guarantee that).
 */
#ifndef TESTS_CAPTURE_STDOUT_H
#define TESTS_CAPTURE_STDOUT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct capture {
    int saved_fd;
    int file_fd;
} capture_t;

static inline void capture_begin(capture_t *c)
{
    fflush(stdout);
    char path[] = "/tmp/captured-stdout-XXXXXX";
    c->file_fd = mkstemp(path);
    ck_assert_int_ge(c->file_fd, 0);
    unlink(path);
    ck_assert_int_eq(fcntl(c->file_fd, F_SETFL, O_APPEND), 0);
    c->saved_fd = dup(STDOUT_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_eq(dup2(c->file_fd, STDOUT_FILENO), STDOUT_FILENO);
}

/* Restores stdout and returns the captured bytes, NUL-terminated; free() them. */
static inline char *capture_end(capture_t *c)
{
    ck_assert_int_eq(dup2(c->saved_fd, STDOUT_FILENO), STDOUT_FILENO);
    close(c->saved_fd);
    off_t size = lseek(c->file_fd, 0, SEEK_END);
    ck_assert_int_ge(size, 0);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(c->file_fd, buf, (size_t)size, 0), size);
    buf[size] = '\0';
    close(c->file_fd);
    return buf;
}

#endif
