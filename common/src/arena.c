/*
 * arena: a chain of blocks with a bump pointer (h2o's mem pool, nginx's ngx_pool_t).
 *
 * Small requests are carved from the head block; a request larger than a quarter of
 * a block gets a block of its own, linked behind the head so the head's free space
 * is not wasted. Cleanups live in the arena itself and are run newest first.
 *
 * Under AddressSanitizer the unused part of every block is poisoned and each
 * allocation unpoisoned on its way out, so an overflow past an arena object is
 * reported as it would be for malloc'd memory.
 */
#include "common/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ARENA_POISON(p, n)   ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_ALIGN         _Alignof(max_align_t)
#define ARENA_DEFAULT_BLOCK ((size_t)8192)

typedef struct arena_block {
    struct arena_block *next;
    size_t cap;  /* bytes in data */
    size_t used; /* bytes handed out from data, always a multiple of ARENA_ALIGN */
    max_align_t data[];
} arena_block_t;

typedef struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *);
    void *p;
} arena_cleanup_t;

struct arena {
    arena_block_t *head; /* the block small requests are carved from */
    arena_cleanup_t *cleanups;
    size_t bytes_used;
    ProtobufCAllocator pb;
};

_Noreturn void common__oom(size_t n)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    fflush(stderr);
    abort();
}

void *common__xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        common__oom(n);
    return p;
}

void *common__xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        common__oom(n * size);
    return p;
}

void *common__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        common__oom(n);
    return q;
}

char *common__xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        common__oom(strlen(s) + 1);
    return p;
}

static size_t arena_round_up(size_t n)
{
    if (n > SIZE_MAX - ARENA_ALIGN)
        common__oom(n);
    return (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
}

static arena_block_t *arena_block_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(arena_block_t))
        common__oom(cap);
    arena_block_t *b = common__xmalloc(sizeof(*b) + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    ARENA_POISON(b->data, cap);
    return b;
}

static void *arena_pb_alloc(void *allocator_data, size_t size)
{
    return arena_alloc(allocator_data, size);
}

/* Memory unpacked into the arena is released with the arena as a whole. */
static void arena_pb_free(void *allocator_data, void *pointer)
{
    (void)allocator_data;
    (void)pointer;
}

arena_t *arena_new(size_t hint)
{
    arena_t *a = common__xmalloc(sizeof(*a));
    a->head = arena_block_new(arena_round_up(hint ? hint : ARENA_DEFAULT_BLOCK));
    a->cleanups = NULL;
    a->bytes_used = 0;
    a->pb.alloc = arena_pb_alloc;
    a->pb.free = arena_pb_free;
    a->pb.allocator_data = a;
    return a;
}

void arena_free(arena_t *a)
{
    if (a == NULL)
        return;
    /* Cleanups first: they may still read arena memory (a json_t kept in a struct). */
    for (arena_cleanup_t *c = a->cleanups; c != NULL; c = c->next)
        c->fn(c->p);
    arena_block_t *b = a->head;
    while (b != NULL) {
        arena_block_t *next = b->next;
        ARENA_UNPOISON(b->data, b->cap);
        free(b);
        b = next;
    }
    free(a);
}

static void *arena_block_take(arena_block_t *b, size_t rounded, size_t n)
{
    unsigned char *p = (unsigned char *)b->data + b->used;
    b->used += rounded;
    ARENA_UNPOISON(p, n);
    return p;
}

void *arena_alloc(arena_t *a, size_t n)
{
    /* Zero-byte requests still get a distinct pointer, as malloc(0) may. */
    size_t rounded = arena_round_up(n ? n : 1);
    a->bytes_used += n;
    if (rounded <= a->head->cap - a->head->used)
        return arena_block_take(a->head, rounded, n);
    if (rounded > ARENA_DEFAULT_BLOCK / 4) {
        /* A dedicated block, behind the head, which keeps its free space. */
        arena_block_t *big = arena_block_new(rounded);
        big->next = a->head->next;
        a->head->next = big;
        return arena_block_take(big, rounded, n);
    }
    arena_block_t *b = arena_block_new(ARENA_DEFAULT_BLOCK);
    b->next = a->head;
    a->head = b;
    return arena_block_take(b, rounded, n);
}

void *arena_calloc(arena_t *a, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        common__oom(SIZE_MAX);
    void *p = arena_alloc(a, total);
    memset(p, 0, total);
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(arena_t *a, const char *s)
{
    return arena_strndup(a, s, SIZE_MAX);
}

void *arena_memdup(arena_t *a, const void *p, size_t n)
{
    if (n == SIZE_MAX)
        common__oom(n);
    unsigned char *q = arena_alloc(a, n + 1);
    if (n > 0)
        memcpy(q, p, n);
    q[n] = '\0';
    return q;
}

/* The header declares no format attribute for the va_list variant; add it here so
 * -Wformat=2 checks the vsnprintf calls against the caller's format. */
__attribute__((format(printf, 2, 0))) char *arena_vsprintf(arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (len < 0)
        len = 0;
    char *p = arena_alloc(a, (size_t)len + 1);
    if (vsnprintf(p, (size_t)len + 1, fmt, ap) < 0)
        p[0] = '\0';
    return p;
}

char *arena_sprintf(arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void arena_cleanup_add(arena_t *a, void (*fn)(void *), void *p)
{
    arena_cleanup_t *c = arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->p = p;
    c->next = a->cleanups;
    a->cleanups = c;
}

ProtobufCAllocator *arena_protobuf_allocator(arena_t *a)
{
    return &a->pb;
}

size_t arena_bytes_used(const arena_t *a)
{
    return a->bytes_used;
}
