"""fastact on a dask cluster against one process, on the same data.

    PYTHONPATH=. python benchmarks/dask_cluster.py [rounds]

One process: the NumPy call on a 256 MiB float32 array (8192 x 8192),
fastact's default threads.  Cluster: distributed.LocalCluster(processes=True,
n_workers=2, threads_per_worker=1) with fastact.dask_worker_plugin(), the
array persisted on the workers in 8 blocks of 1024 rows, the result
persisted there (not sent back).  Rounds interleave the two; each figure is
the best and the median of the rounds, in ms.
"""
import os
import sys
import time

import numpy as np


def main(rounds=5):
    import dask.array as da
    import distributed

    import fastact
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
    shape, chunks = (8192, 8192), (1024, 8192)
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(fastact.dask_worker_plugin())
        lazy = da.random.default_rng(0).standard_normal(shape, chunks=chunks,
                                                        dtype=np.float32).persist()
        distributed.wait(lazy)
        x = lazy.compute()
        cases = {
            "relu": (lambda: fastact.relu(x), lambda: fastact.relu(lazy)),
            "softmax rows (axis=-1)": (lambda: fastact.softmax(x, axis=-1),
                                       lambda: fastact.softmax(lazy, axis=-1)),
            "softmax axis=0 (chunked: two-pass)": (lambda: fastact.softmax(x, axis=0),
                                                   lambda: fastact.softmax(lazy, axis=0,
                                                                           method="two-pass")),
            "softmax axis=0 rechunk": (lambda: fastact.softmax(x, axis=0),
                                       lambda: fastact.softmax(lazy, axis=0,
                                                               method="rechunk")),
        }
        times = {k: ([], []) for k in cases}
        for r in range(rounds + 1):           # round 0 warms both up, untimed
            for name, (one, many) in cases.items():
                t = time.perf_counter()
                one()
                t1 = time.perf_counter() - t
                t = time.perf_counter()
                y = many().persist()
                distributed.wait(y)
                t2 = time.perf_counter() - t
                del y
                if r:
                    times[name][0].append(t1 * 1e3)
                    times[name][1].append(t2 * 1e3)
    print(f"fastact threads in this process: {fastact.get_num_threads()}; "
          f"load: {os.getloadavg()}")
    for name, (a, b) in times.items():
        print(f"{name:36s} one process {min(a):7.1f} / {np.median(a):7.1f} ms   "
              f"cluster {min(b):7.1f} / {np.median(b):7.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
