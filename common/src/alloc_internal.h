/*
 * alloc_internal: the out-of-memory policy shared by common/ (docs/style.md, "Memory
 * ownership"): a failed allocation aborts with a message, as redis'
 * zmalloc_oom_handler does, because no caller can do anything useful about it.
 */
#ifndef COMMON_ALLOC_INTERNAL_H
#define COMMON_ALLOC_INTERNAL_H

#include <stddef.h>

/* common__oom: prints "out of memory allocating <n> bytes" to stderr and aborts. */
_Noreturn void common__oom(size_t n);

/* common__xmalloc / common__xcalloc / common__xrealloc / common__xstrdup: malloc,
 * calloc, realloc and strdup that never return NULL (they call common__oom). The caller
 * frees the result with free(). */
void *common__xmalloc(size_t n);
void *common__xcalloc(size_t n, size_t size);
void *common__xrealloc(void *p, size_t n);
char *common__xstrdup(const char *s);

#endif
