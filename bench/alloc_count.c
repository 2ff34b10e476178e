/*
 * alloc_count.c -- an allocation and write(2) counter preloaded into the
 * bench programs (LD_PRELOAD=bench/alloc_count.so), so "allocations per
 * task" counts what every library, and the harness, allocate from every
 * thread, and "wakeup writes per task" can be counted for libraries that
 * keep no statistics (libuv's uv_async_send and libevexec's wakeup both call
 * write(2) through the PLT), without slowing the run as strace does.
 * It replaces the entry points with thin wrappers around glibc's own
 * (__libc_malloc and friends, __write: no dlsym, so no recursion) and
 * counts only while the program has switched counting on: harness.c does
 * that for its measured phase through bench_count_on(), a weak reference
 * that stays NULL when this library is not preloaded.
 *
 * glibc only: other C libraries do not export __libc_malloc.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *ptr);
extern ssize_t __write(int fd, const void *buf, size_t count);

void bench_count_on(int on);
void bench_count_read(uint64_t *allocs, uint64_t *frees, uint64_t *writes);
ssize_t write(int fd, const void *buf, size_t count);
void *malloc(size_t size);
void *calloc(size_t nmemb, size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);
int posix_memalign(void **out, size_t alignment, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size);

static atomic_int counting;
static atomic_uint_fast64_t allocs, frees, writes;

/* Counting is off most of the time: one relaxed load per call. */
static inline void count(atomic_uint_fast64_t *counter)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

void bench_count_on(int on)
{
    if (on) {
        atomic_store(&allocs, 0);
        atomic_store(&frees, 0);
        atomic_store(&writes, 0);
    }
    atomic_store(&counting, on);
}

void bench_count_read(uint64_t *allocs_out, uint64_t *frees_out, uint64_t *writes_out)
{
    *allocs_out = atomic_load(&allocs);
    *frees_out = atomic_load(&frees);
    *writes_out = atomic_load(&writes);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    count(&writes);
    return __write(fd, buf, n);
}

void *malloc(size_t size)
{
    count(&allocs);
    return __libc_malloc(size);
}

void *calloc(size_t nmemb, size_t size)
{
    count(&allocs);
    return __libc_calloc(nmemb, size);
}

/* A realloc is one allocation (it may move the block); realloc(p, 0) is a free. */
void *realloc(void *ptr, size_t size)
{
    count(ptr && !size ? &frees : &allocs);
    return __libc_realloc(ptr, size);
}

void free(void *ptr)
{
    if (ptr)
        count(&frees);
    __libc_free(ptr);
}

void *memalign(size_t alignment, size_t size)
{
    count(&allocs);
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
        return EINVAL;
    void *p = memalign(alignment, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
