"""Joining Ray: a running cluster at an address, or a local Ray of this job alone.

A local Ray advertises the loopback address, but Ray binds its GCS and raylet ports on
every interface (it has no loopback-only setting); its token authentication, on by
default, is what guards them. A station PC that must expose nothing runs ``huoyan batch``
behind its host firewall, or on a cluster machine instead."""

from __future__ import annotations

import logging


def connect(address: str | None, cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray of ``cpus`` for this job;
    False if this process was connected already."""
    import ray

    if ray.is_initialized():
        return False
    for name in ("ray", "ray.data"):  # Ray's start-up and plan notes
        logging.getLogger(name).setLevel(logging.ERROR)
    env = {"env_vars": {"OMP_NUM_THREADS": "1"}}  # one core per task or actor: the pool is the parallelism
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False, configure_logging=False)
    else:  # a cluster of this job alone, ended with it
        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            runtime_env=env,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
    return True
