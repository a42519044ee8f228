/* pool.c: fastact's thread pool (pool.h says why it is not OpenMP).
 *
 * Workers are started on first use, as many as a call asks for (at most
 * FA_POOL_MAX), and live for the process.  One job runs at a time; a call
 * that finds the pool busy (another Python thread's call) runs on its own
 * thread.  A job: the caller writes its descriptor into the pool, gives each
 * thread of the team a range of the chunks (a static split's) in a claim
 * word of its own, then bumps `gen`, which the workers watch (spinning
 * FA_SPIN_NS, then asleep on a condition variable).  Each thread, the
 * caller as thread 0, claims the chunks of its range one at a time by a
 * compare-and-swap of its word, then those left in the others' ranges.  A
 * claim word carries the job's generation, so a worker that wakes after its
 * job ended claims nothing and reads nothing of it.  The caller returns once
 * `finished` counts every chunk: it waits only for chunks a thread holds.
 */
#define _POSIX_C_SOURCE 200809L    /* clock_gettime, pthread_sigmask under -std=c11 */
#include "pool.h"
#include "fastact.h"

#include <stdatomic.h>
#include <stddef.h>

#if (defined(__unix__) || defined(__APPLE__)) && !defined(FA_NO_THREADS)
#define FA_THREADS 1
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#else
#define FA_THREADS 0
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FA_PAUSE() _mm_pause()
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define FA_PAUSE() __asm__ __volatile__("yield")
#else
#define FA_PAUSE() ((void)0)
#endif

/* Chunks a thread: enough that the share of a thread that never runs is
   picked up by the others in small pieces; each claim costs a
   compare-and-swap on a line all threads share. */
#ifndef FA_CHUNKS_PER_THREAD
#define FA_CHUNKS_PER_THREAD 8
#endif

fa_chunks fa_chunks_for(int64_t units, int64_t grain, int64_t min_units, int nthreads)
{
    fa_chunks ch = {units, units, units > 0};
    if (nthreads <= 1 || units <= 0) return ch;
    if (grain < 1) grain = 1;
    if (min_units < grain) min_units = grain;
    min_units = (min_units + grain - 1) / grain * grain;
    int64_t want = (int64_t)nthreads * FA_CHUNKS_PER_THREAD;
    int64_t size = (units + want - 1) / want;
    size = (size + grain - 1) / grain * grain;
    if (size < min_units) size = min_units;
    ch.size = size;
    ch.count = (units + size - 1) / size;
    return ch;
}

fa_chunks fa_chunks_fixed(int64_t units, int64_t grain, int64_t count)
{
    fa_chunks ch = {units, units, units > 0};
    if (units <= 0 || count <= 1) return ch;
    if (grain < 1) grain = 1;
    int64_t size = (units + count - 1) / count;
    ch.size = (size + grain - 1) / grain * grain;
    ch.count = (units + ch.size - 1) / ch.size;
    return ch;
}

static void fa_serial(fa_task_fn fn, void *ctx, fa_chunks ch, int whole)
{
    if (whole || ch.count <= 1) {
        if (ch.units > 0) fn(ctx, 0, 0, ch.units);
        return;
    }
    for (int64_t i = 0; i < ch.count; i++) {
        int64_t lo = i * ch.size, hi = lo + ch.size < ch.units ? lo + ch.size : ch.units;
        fn(ctx, i, lo, hi);
    }
}

#if FA_THREADS

#define FA_POOL_MAX 256
/* idle workers watch for the next job this long before they sleep: back to
   back calls (a loop of kernels) then skip the wake-up, as OpenMP's spinning
   does */
#define FA_SPIN_NS 100000
/* a caller waits this long for the chunks other threads hold before it
   yields its core between looks (their thread may need it) */
#define FA_WAIT_SPIN_NS 20000

/* A claim word: the job's generation (32 bits), the next chunk and the end
   of a thread's range of chunks (16 bits each), so that one
   compare-and-swap both checks and takes a chunk of that very job. */
#define FA_MAX_CHUNKS 0xffff
#define FA_CLAIM(gen, next, end) ((uint64_t)(gen) << 32 | (uint64_t)(next) << 16 | (uint64_t)(end))
#define FA_CLAIM_GEN(c) ((uint32_t)((c) >> 32))
#define FA_CLAIM_NEXT(c) ((int64_t)(((c) >> 16) & 0xffff))
#define FA_CLAIM_END(c) ((int64_t)((c) & 0xffff))

typedef struct fa_worker {
    /* the chunks of this thread's share of the job (its home range, which
       others take once theirs is done: the share of a thread that does not
       run is taken by the ones that do) */
    _Alignas(64) _Atomic uint64_t claim;
    _Atomic int asleep;                  /* waiting on `wake` */
    _Atomic int parked;                  /* test hook: fa_test_park_worker */
    _Atomic int waiting;                 /* parked and blocked */
    _Atomic uint32_t done_gen;           /* the last job it looked at */
    _Atomic int64_t chunks;              /* chunks this thread ran */
    pthread_t thread;
} fa_worker;

static struct fa_pool {
    pthread_mutex_t busy;                /* held by the call whose job runs */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake, unpark;
    int started;                         /* workers 1..started exist (under busy) */
    uint32_t next_gen;                   /* under busy */
    _Alignas(64) _Atomic int64_t finished;
    _Alignas(64) _Atomic uint32_t gen;   /* the latest job's generation */
    _Atomic int team;                    /* threads 0..team-1 take part */
    /* the job: written before the claims publish it, read after a claim */
    fa_task_fn fn;
    void *ctx;
    int64_t units, size;
    fa_worker w[FA_POOL_MAX + 1];        /* [0]: callers */
} fa_pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .sleep_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .unpark = PTHREAD_COND_INITIALIZER,
};

/* tests only: the caller also waits for every worker of the team to have
   looked at the job, as an OpenMP region's closing barrier does */
static _Atomic int fa_barrier = 0;

/* A child forked from a process that had started workers has none of them,
   and maybe a `busy` lock some other thread held: it runs serially (as
   PyTorch's children do; fastact._threads says so to both backends). */
static _Atomic int fa_forked = 0;
static pthread_once_t fa_atfork_once = PTHREAD_ONCE_INIT;
static void fa_mark_forked(void) { atomic_store(&fa_forked, 1); }
static void fa_register_atfork(void) { pthread_atfork(NULL, NULL, fa_mark_forked); }

static int64_t fa_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void fa_park_point(int k)
{
    fa_worker *w = &fa_pool.w[k];
    if (!atomic_load_explicit(&w->parked, memory_order_acquire)) return;
    pthread_mutex_lock(&fa_pool.sleep_lock);
    atomic_store(&w->waiting, 1);
    while (atomic_load(&w->parked)) pthread_cond_wait(&fa_pool.unpark, &fa_pool.sleep_lock);
    atomic_store(&w->waiting, 0);
    pthread_mutex_unlock(&fa_pool.sleep_lock);
}

static void fa_run_chunk(int k, int64_t i)
{
    /* the job stays as it is while a chunk of it is unfinished */
    int64_t lo = i * fa_pool.size;
    int64_t hi = lo + fa_pool.size < fa_pool.units ? lo + fa_pool.size : fa_pool.units;
    fa_pool.fn(fa_pool.ctx, i, lo, hi);
    atomic_fetch_add_explicit(&fa_pool.w[k].chunks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fa_pool.finished, 1, memory_order_release);
}

/* thread k takes the chunks of job `g`: its own range first (in order: on
   an idle machine each thread works through the same part of the arrays
   call after call, as a static split does, and keeps it in its caches),
   then, once that is done, what is left of the others' */
static void fa_take_chunks(int k, uint32_t g)
{
    const int team = atomic_load_explicit(&fa_pool.team, memory_order_relaxed);
    if (k >= team) return;
    for (int d = 0; d < team; d++) {
        _Atomic uint64_t *claim = &fa_pool.w[(k + d) % team].claim;
        for (;;) {
            if (k > 0) fa_park_point(k);
            uint64_t c = atomic_load_explicit(claim, memory_order_acquire);
            if (FA_CLAIM_GEN(c) != g) return;            /* the job is over */
            if (FA_CLAIM_NEXT(c) >= FA_CLAIM_END(c)) break;
            if (atomic_compare_exchange_weak_explicit(claim, &c, c + (UINT64_C(1) << 16),
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed))
                fa_run_chunk(k, FA_CLAIM_NEXT(c));
        }
    }
}

/* the next job after `seen` that worker k takes part in (a call with fewer
   threads than the pool has passes the others by) */
static uint32_t fa_wait_job(int k, uint32_t seen)
{
    uint32_t g;
    int64_t t0 = fa_now_ns();
    for (int i = 1;; i++) {
        g = atomic_load_explicit(&fa_pool.gen, memory_order_acquire);
        if (g != seen) {
            if (k < atomic_load_explicit(&fa_pool.team, memory_order_relaxed)) return g;
            seen = g;
        }
        FA_PAUSE();
        if (i % 64 == 0 && fa_now_ns() - t0 > FA_SPIN_NS) break;
    }
    fa_worker *w = &fa_pool.w[k];
    pthread_mutex_lock(&fa_pool.sleep_lock);
    atomic_store(&w->asleep, 1);
    while ((g = atomic_load(&fa_pool.gen)) == seen || k >= atomic_load(&fa_pool.team)) {
        seen = g;
        pthread_cond_wait(&fa_pool.wake, &fa_pool.sleep_lock);
    }
    atomic_store(&w->asleep, 0);
    pthread_mutex_unlock(&fa_pool.sleep_lock);
    return g;
}

static void *fa_worker_main(void *arg)
{
    const int k = (int)((uintptr_t)arg & 0xffff);
    uint32_t seen = (uint32_t)((uintptr_t)arg >> 16);
    for (;;) {
        /* a job this worker missed entirely shows as a later generation in
           the claims: it claims nothing of it */
        seen = fa_wait_job(k, seen);
        if (k > 0) fa_park_point(k);
        fa_take_chunks(k, seen);
        atomic_store_explicit(&fa_pool.w[k].done_gen, seen, memory_order_release);
    }
    return NULL;
}

/* workers 1..want-1 started (under busy); returns how many threads a job
   may use */
static int fa_start_workers(int want)
{
    if (want > FA_POOL_MAX + 1) want = FA_POOL_MAX + 1;
    if (fa_pool.started + 1 >= want) return want;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);      /* signals go to Python's threads */
    while (fa_pool.started + 1 < want) {
        int k = fa_pool.started + 1;
        uintptr_t arg = (uintptr_t)k | ((uintptr_t)atomic_load(&fa_pool.gen) << 16);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&fa_pool.w[k].thread, &attr, fa_worker_main, (void *)arg);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        fa_pool.started = k;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return fa_pool.started + 1 < want ? fa_pool.started + 1 : want;
}

void fa_pool_for(fa_task_fn fn, void *ctx, fa_chunks ch, int nthreads, int whole)
{
    if (nthreads > 1 && ch.count > 1) {
        pthread_once(&fa_atfork_once, fa_register_atfork);
        if (atomic_load_explicit(&fa_forked, memory_order_relaxed) || ch.count > FA_MAX_CHUNKS)
            nthreads = 1;
    }
    if (nthreads <= 1 || ch.count <= 1 || pthread_mutex_trylock(&fa_pool.busy) != 0) {
        fa_serial(fn, ctx, ch, whole);
        return;
    }
    int team = fa_start_workers(nthreads < ch.count ? nthreads : (int)ch.count);
    if (team <= 1) {
        pthread_mutex_unlock(&fa_pool.busy);
        fa_serial(fn, ctx, ch, whole);
        return;
    }
    const uint32_t g = ++fa_pool.next_gen;
    fa_pool.fn = fn;
    fa_pool.ctx = ctx;
    fa_pool.units = ch.units;
    fa_pool.size = ch.size;
    atomic_store_explicit(&fa_pool.finished, 0, memory_order_relaxed);
    atomic_store_explicit(&fa_pool.team, team, memory_order_relaxed);
    for (int t = 0; t < team; t++)       /* thread t's range: a static split's */
        atomic_store_explicit(&fa_pool.w[t].claim,
                              FA_CLAIM(g, ch.count * t / team, ch.count * (t + 1) / team),
                              memory_order_release);
    atomic_store(&fa_pool.gen, g);
    for (int k = 1; k < team; k++)       /* a system call only where one sleeps */
        if (atomic_load(&fa_pool.w[k].asleep)) {
            pthread_mutex_lock(&fa_pool.sleep_lock);
            pthread_cond_broadcast(&fa_pool.wake);
            pthread_mutex_unlock(&fa_pool.sleep_lock);
            break;
        }
    fa_take_chunks(0, g);
    if (atomic_load_explicit(&fa_pool.finished, memory_order_acquire) < ch.count) {
        int64_t t0 = fa_now_ns();
        for (int i = 1; atomic_load_explicit(&fa_pool.finished, memory_order_acquire) < ch.count;
             i++) {
            FA_PAUSE();
            if (i % 64 == 0 && fa_now_ns() - t0 > FA_WAIT_SPIN_NS) sched_yield();
        }
    }
    if (atomic_load_explicit(&fa_barrier, memory_order_relaxed))
        for (int k = 1; k < team; k++)
            while (atomic_load_explicit(&fa_pool.w[k].done_gen, memory_order_acquire) != g)
                sched_yield();
    pthread_mutex_unlock(&fa_pool.busy);
}

int fa_threads_built(void) { return 1; }

int fa_pool_workers(void)
{
    pthread_mutex_lock(&fa_pool.busy);
    int n = fa_pool.started;
    pthread_mutex_unlock(&fa_pool.busy);
    return n;
}

int64_t fa_pool_chunks_run(int k)
{
    return k >= 0 && k <= FA_POOL_MAX ? atomic_load(&fa_pool.w[k].chunks) : -1;
}

int fa_test_park_worker(int k, int on)
{
    if (k < 1 || k > FA_POOL_MAX) return -1;
    pthread_mutex_lock(&fa_pool.sleep_lock);
    atomic_store(&fa_pool.w[k].parked, on != 0);
    if (!on) pthread_cond_broadcast(&fa_pool.unpark);
    pthread_mutex_unlock(&fa_pool.sleep_lock);
    return 0;
}

int fa_test_worker_parked(int k)
{
    return k >= 1 && k <= FA_POOL_MAX ? atomic_load(&fa_pool.w[k].waiting) : 0;
}

void fa_test_barrier(int on) { atomic_store(&fa_barrier, on != 0); }

#else /* no threads: every call runs on the calling thread */

void fa_pool_for(fa_task_fn fn, void *ctx, fa_chunks ch, int nthreads, int whole)
{
    (void)nthreads;
    fa_serial(fn, ctx, ch, whole);
}

int fa_threads_built(void) { return 0; }
int fa_pool_workers(void) { return 0; }
int64_t fa_pool_chunks_run(int k) { (void)k; return -1; }
int fa_test_park_worker(int k, int on) { (void)k; (void)on; return -1; }
int fa_test_worker_parked(int k) { (void)k; return 0; }
void fa_test_barrier(int on) { (void)on; }

#endif

/* --- the entry point of other compiled code (the Numba backend's range
   workers) --- */

typedef struct fa_range_job {
    fa_range_cb fn;
    void *arg;
} fa_range_job;

static void fa_range_task(void *ctx, int64_t chunk, int64_t lo, int64_t hi)
{
    const fa_range_job *j = (const fa_range_job *)ctx;
    (void)chunk;
    j->fn(lo, hi, j->arg);
}

int fa_pool_run(fa_range_cb fn, void *arg, int64_t units, int64_t grain, int64_t min_units,
                int nthreads)
{
    if (fn == NULL || units < 0) return -1;
    fa_range_job j = {fn, arg};
    fa_pool_for(fa_range_task, &j, fa_chunks_for(units, grain, min_units, nthreads), nthreads, 1);
    return 0;
}
