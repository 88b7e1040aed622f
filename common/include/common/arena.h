/*
 * arena: one region of memory per request, RPC or event, freed at once.
 *
 * Allocation never fails: out of memory aborts with a message (there is nothing
 * useful a request can do about it). Foreign objects (PGresult, json_t, byte
 * buffers) are tied to the arena with arena_cleanup_add and released, in reverse
 * order of registration, by arena_free. An arena is used by one thread at a time.
 */
#ifndef COMMON_ARENA_H
#define COMMON_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stddef.h>

typedef struct arena arena_t;

/* arena_new: an empty arena whose first block holds at least `hint` bytes (0 picks a
 * default of 8 KiB). Owned by the caller; release with arena_free. */
arena_t *arena_new(size_t hint);

/* arena_free: runs the cleanups, then frees every block. NULL is accepted. */
void arena_free(arena_t *a);

/* arena_alloc: n bytes aligned for any type, uninitialized; valid until arena_free.
 * arena_calloc zeroes and checks n * size for overflow (overflow aborts). */
void *arena_alloc(arena_t *a, size_t n);
void *arena_calloc(arena_t *a, size_t n, size_t size);

/* Copies of strings and bytes into the arena, always NUL-terminated. */
char *arena_strdup(arena_t *a, const char *s);
char *arena_strndup(arena_t *a, const char *s, size_t n);
void *arena_memdup(arena_t *a, const void *p, size_t n);
char *arena_sprintf(arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vsprintf(arena_t *a, const char *fmt, va_list ap);

/* arena_cleanup_add: fn(p) runs at arena_free. */
void arena_cleanup_add(arena_t *a, void (*fn)(void *), void *p);

/* arena_protobuf_allocator: a protobuf-c allocator backed by this arena, so messages
 * unpacked with it need no protobuf_c_message_free_unpacked (their free is a no-op).
 * Borrowed: lives as long as the arena. */
ProtobufCAllocator *arena_protobuf_allocator(arena_t *a);

/* arena_bytes_used: total bytes handed out so far (for tests and metrics). */
size_t arena_bytes_used(const arena_t *a);

#endif
