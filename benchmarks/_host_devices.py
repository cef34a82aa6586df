"""XLA host devices for the CPU benchmarks, one per core, set before JAX starts.

XLA reads ``XLA_FLAGS`` once, when JAX initialises its backend, so a benchmark calls
:func:`request_host_devices` at import time, before ``import jax``. Several host devices
let epinn run independent blocks of work (the members of an ensemble, the halves of a
data-parallel minibatch) on several cores; one device runs them on one core. The
ensemble benchmark also has XLA compile small loops into single kernels (see
:func:`epinn.configure_cpu`, which sets both flags).
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


def request_host_devices(argv: list[str], *, loop_kernels: bool = False) -> int:
    """Read ``--devices`` (default: the available cores) and ask XLA for that many.

    With ``loop_kernels``, also read ``--loop-kernel-bytes`` (default
    :data:`epinn.sharding.LOOP_KERNEL_BYTES`; 0 for XLA's default) and let XLA compile
    loops with states up to that size into single kernels (:func:`epinn.configure_cpu`).
    Without it, a value already in ``XLA_FLAGS`` is left as it is.
    """
    from epinn.sharding import LOOP_KERNEL_BYTES, configure_cpu  # imports JAX, starts nothing

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--devices", type=int, default=available_cores())
    pre.add_argument("--loop-kernel-bytes", type=int, default=LOOP_KERNEL_BYTES)
    known = pre.parse_known_args(argv)[0]
    devices = max(1, known.devices)
    loop_bytes = known.loop_kernel_bytes if loop_kernels and known.loop_kernel_bytes > 0 else None
    configure_cpu(devices, loop_kernel_bytes=loop_bytes)
    return devices
