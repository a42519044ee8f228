/* pool.h: fastact's thread pool (pool.c), for fastact.c.
 *
 * A parallel call is cut into chunks that whoever runs takes: the calling
 * thread and the pool's workers claim them one at a time from a shared
 * counter, and the call returns once every chunk is done, whether or not a
 * worker ever woke up for it.  (An OpenMP region ends at a barrier that
 * every thread of its team must reach: one worker the scheduler leaves off
 * its core stalls the whole call; see fastact issue #18.)
 */
#ifndef FASTACT_POOL_H
#define FASTACT_POOL_H

#include <stdint.h>

/* fn(ctx, chunk, lo, hi): chunk `chunk` of a job, units [lo, hi) */
typedef void (*fa_task_fn)(void *ctx, int64_t chunk, int64_t lo, int64_t hi);

/* [0, units) in `count` chunks of `size` units (the last one shorter) */
typedef struct fa_chunks {
    int64_t units, size, count;
} fa_chunks;

/* A few chunks a thread (FA_CHUNKS_PER_THREAD), each a multiple of `grain`
   units and at least `min_units` long; one chunk where nthreads <= 1. */
fa_chunks fa_chunks_for(int64_t units, int64_t grain, int64_t min_units, int nthreads);
/* `count` chunks of [0, units), multiples of `grain`: a layout that does not
   depend on the thread count */
fa_chunks fa_chunks_fixed(int64_t units, int64_t grain, int64_t count);

/* Runs every chunk of `ch` on up to `nthreads` threads, the caller one of
   them, and returns when all are done.  On the calling thread alone (in
   chunk order) where nthreads <= 1, there is one chunk, another call holds
   the pool, or the process was forked from one that had used it; `whole`:
   a call on the calling thread alone runs [0, units) as chunk 0 at once. */
void fa_pool_for(fa_task_fn fn, void *ctx, fa_chunks ch, int nthreads, int whole);

#endif /* FASTACT_POOL_H */
