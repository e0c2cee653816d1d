"""Connecting to a cluster: a LocalCluster of worker processes on this machine ("local:N"), or
a running scheduler ("tcp://host:port", or DASK_SCHEDULER_ADDRESS); checked before any work."""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from ..errors import StudyError
from . import versions
from ._dask import distributed

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
SPEC_HELP = '"local:N" (N worker processes on this machine) or a scheduler address "tcp://host:port"'
# Seconds to wait for a scheduler to answer, and for its first worker to join.
CONNECT_TIMEOUT = 5.0


@dataclass
class Cluster:
    """A connected client, and the LocalCluster it started (None for a remote scheduler)."""

    client: Any  # distributed.Client
    local: Any | None  # distributed.LocalCluster
    address: str
    dashboard: str | None

    @property
    def n_workers(self) -> int:
        return len(self.client.nthreads())

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_spec(spec: str | None) -> tuple[str, int | str]:
    """("local", N) or ("remote", address); spec None reads DASK_SCHEDULER_ADDRESS."""
    if spec is None:
        spec = os.environ.get(ADDRESS_VARIABLE, "").strip()
        if not spec:
            raise StudyError(f"no cluster given: pass {SPEC_HELP}, or set {ADDRESS_VARIABLE}.")
    spec = spec.strip()
    local = re.fullmatch(r"local:(\d+)", spec)
    if local:
        n = int(local.group(1))
        if not 1 <= n <= 1024:
            raise StudyError(f"cluster {spec!r}: the number of local workers must be 1 to 1024.")
        return "local", n
    if re.fullmatch(r"(tcp|tls|ws|wss|inproc|ucx)://\S+", spec):
        return "remote", spec
    raise StudyError(f"cluster {spec!r} is not understood: use {SPEC_HELP}.")


# Dask's monitoring, relaxed for a local cluster of minute-long CPU-bound tasks: with the defaults
# (a stack sample every 10 ms, memory every 100 ms, system metrics every 500 ms, an event-loop
# check every 20 ms) an idle cluster of 2 took 19 % of one of this machine's 2 cores (the client's
# process 8 %, each worker 5 %); with these 2.4 %. The dashboard still shows everything, sampled
# less often; a worker over its memory limit is still stopped, within a second.
QUIET_MONITORING = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "500ms",
}


def _start_local(dd, n_workers: int):
    """N worker processes with one thread each (the tasks are single-threaded: BLAS and Numba
    at one thread, as the study's own workers run them), the dashboard on a free port."""
    import copy

    import dask

    try:
        with dask.config.set(QUIET_MONITORING):  # the scheduler and the nannies read it as they start
            # the workers get it from their nanny at every start (also after a restart); a copy of
            # its own, as the nanny keeps the nested dicts it is given and this context restores ours
            workers_config = {"distributed": copy.deepcopy(dask.config.get("distributed"))}
            return dd.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
                config=workers_config,
            )
    except (RuntimeError, OSError, TimeoutError) as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        # the usual cause: a script without `if __name__ == "__main__":`, which the workers'
        # fresh interpreters re-run when they start (multiprocessing's spawn)
        raise StudyError(
            f"could not start {n_workers} local Dask worker process(es) ({type(err).__name__}: {reason}); a script that "
            'starts a local cluster must keep its work under `if __name__ == "__main__":`.'
        ) from None


def _connect_remote(dd, address: str, timeout: float):
    try:
        client = dd.Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as err:
        raise StudyError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({type(err).__name__}); "
            "start one (`dask scheduler`, then `dask worker <address>`) or check the address."
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise StudyError(f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`.") from None
    return client


def check_packages(client, expected: dict[str, str] | None = None) -> None:
    """Every worker runs the same packages as this process (``expected``: its own, by
    default); StudyError otherwise."""
    found = client.run(versions.package_versions)
    versions.check_workers(versions.package_versions() if expected is None else expected, found)


def connect(spec: str | None, *, timeout: float = CONNECT_TIMEOUT, stream: TextIO | None = None) -> Cluster:
    """A checked connection to the cluster ``spec`` (see parse_spec); prints the dashboard
    address on ``stream`` (stderr). Raises StudyError, before any work, when Dask is missing,
    the scheduler cannot be reached or has no workers, or a worker's packages differ."""
    kind, target = parse_spec(spec)
    dd = distributed()
    local = None
    if kind == "local":
        local = _start_local(dd, int(target))
        client = dd.Client(local)
    else:
        client = _connect_remote(dd, str(target), timeout)
    try:
        check_packages(client)
    except BaseException:
        client.close()
        if local is not None:
            local.close()
        raise
    dashboard = client.dashboard_link
    address = client.scheduler.address
    print(f"Dask cluster {address}: dashboard {dashboard}", file=stream if stream is not None else sys.stderr)
    return Cluster(client=client, local=local, address=address, dashboard=dashboard)
