"""Independent units of work on a Dask `distributed` cluster (the optional `dask` extra).

Campaign trials, bit-search seeds and attack units are pure functions of their arguments
(every random choice is seeded by the unit), so they can run anywhere. This package runs them
on Dask without qtool becoming a scheduler of its own:

spec.py      `ClusterSpec`: `local:N` (an in-process LocalCluster) or `tcp://HOST:PORT` (an
             existing scheduler); parsed without importing Dask
client.py    open the cluster (start it, or connect within a timeout), close it
units.py     `UnitRunner`: send the shared inputs once per worker (scatter), map units over
             the workers, yield results as tasks complete, cancel everything on Ctrl-C;
             `worker_state`: state built once per worker process (and thread)

Nothing here imports Dask at module level: a run without a cluster never loads it.
"""

from qtool.cluster.spec import DEFAULT_TIMEOUT, ClusterSpec, parse_cluster

__all__ = ["DEFAULT_TIMEOUT", "ClusterSpec", "parse_cluster"]
