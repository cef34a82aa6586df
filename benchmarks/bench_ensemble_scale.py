"""Benchmark: a million-member SIR ensemble in bounded memory (issue #7).

Set-up: normalised SIR (N = 1), s0 = 0.999, i0 = 0.001, t in [0, 160] saved at 161 points,
beta ~ U(0.1, 1.0), gamma ~ U(0.05, 0.5) from ``jax.random.PRNGKey(seed)``, rtol = 1e-6,
atol = 1e-9, float32. :func:`epinn.ensemble_summary` keeps the mean, standard deviation,
minimum and maximum over members at every saved time and each member's peak time, peak
size and attack rate; the ``members x 161 x 3`` trajectories (1.9 GB for a million
members) are never held.

Each ensemble size runs in a fresh process, so that its peak resident memory (``ru_maxrss``)
is its own. Printed per size: wall time of the first call (compilation included) and of a
second call, members solved per second, peak RSS, and, as a check, the largest difference
between the summary of the first ``--check`` members and the same statistics computed from
:func:`epinn.solve_ensemble`'s full trajectories.

Run: ``python benchmarks/bench_ensemble_scale.py`` (``--sizes 10000,100000,1000000``,
``--devices k`` splits the CPU into ``k`` XLA devices, ``--json out.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

S0, I0, T1, NT = 0.999, 0.001, 160.0, 161


def _worker(members: int, seed: int, chunk: int, check: int) -> dict:
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import epinn

    kb, kg = jr.split(jr.PRNGKey(seed))
    beta = jr.uniform(kb, (members,), minval=0.1, maxval=1.0)
    gamma = jr.uniform(kg, (members,), minval=0.05, maxval=0.5)
    ts = jnp.linspace(0.0, T1, NT)
    y0 = jnp.array([S0, I0, 0.0])
    kw = dict(rtol=1e-6, atol=1e-9, chunk_size=chunk)

    def run(b, g):
        out = epinn.ensemble_summary(epinn.SIR(), {"beta": b, "gamma": g, "N": 1.0}, y0, ts,
                                     **kw)
        return jax.block_until_ready(out)

    t = time.perf_counter()
    out = run(beta, gamma)
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = run(beta, gamma)
    warm = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux

    # Check: the summary of the first `check` members against full trajectories.
    m = min(check, members)
    small = epinn.ensemble_summary(epinn.SIR(), {"beta": beta[:m], "gamma": gamma[:m],
                                                 "N": 1.0}, y0, ts, **kw)
    full = epinn.solve_ensemble(epinn.SIR(), {"beta": beta[:m], "gamma": gamma[:m],
                                              "N": 1.0}, y0, ts, **kw)
    ys = np.asarray(full.ys, np.float64)
    diff = max(float(np.max(np.abs(np.asarray(small.mean) - ys.mean(0)))),
               float(np.max(np.abs(np.asarray(small.std) - ys.std(0)))))
    return {
        "members": members,
        "devices": jax.device_count(),
        "first_call_s": first,
        "warm_s": warm,
        "members_per_s": members / warm,
        "peak_rss_mib": rss,
        "all_success": bool(np.all(np.asarray(out.success))),
        "mean_attack_rate": float(np.mean(np.asarray(out.cumulative_infections))),
        "check_members": m,
        "check_max_abs_diff": diff,
        "jax": jax.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--check", type=int, default=2000)
    p.add_argument("--devices", type=int, default=1, help="XLA CPU devices (1 = default)")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker is not None:
        print(json.dumps(_worker(a.worker, a.seed, a.chunk_size, a.check)))
        return
    env = dict(os.environ)
    if a.devices > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={a.devices}").strip()
    rows = []
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{a.devices} XLA device(s)")
    print(f"{'members':>9} {'first s':>8} {'warm s':>8} {'members/s':>11} {'peak RSS':>10} "
          f"{'check |diff|':>12}")
    for size in (int(s) for s in a.sizes.split(",")):
        cmd = [sys.executable, __file__, "--worker", str(size), "--seed", str(a.seed),
               "--chunk-size", str(a.chunk_size), "--check", str(a.check)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['members']:>9} {r['first_call_s']:>8.2f} {r['warm_s']:>8.2f} "
              f"{r['members_per_s']:>11.0f} {r['peak_rss_mib']:>7.0f} MiB "
              f"{r['check_max_abs_diff']:>12.1e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": platform.machine(), "cores": os.cpu_count(), "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()
