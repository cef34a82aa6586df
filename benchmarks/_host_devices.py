"""XLA host devices for the CPU benchmarks, one per core, set before JAX starts.

XLA reads ``XLA_FLAGS`` once, when JAX initialises its backend, so a benchmark calls
:func:`request_host_devices` at import time, before ``import jax``. Several host devices
let epinn run independent blocks of work (the members of an ensemble, the halves of a
data-parallel minibatch) on several cores; one device runs them on one core.
"""

from __future__ import annotations

import argparse
import os


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def request_host_devices(argv: list[str]) -> int:
    """Read ``--devices`` (default: the available cores) and ask XLA for that many."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--devices", type=int, default=available_cores())
    devices = max(1, pre.parse_known_args(argv)[0].devices)
    if devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={devices}")
    return devices
