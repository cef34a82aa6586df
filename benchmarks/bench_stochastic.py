"""Benchmark: stochastic SIR ensembles, epinn's simulators against a compiled loop.

* Exact simulation (Gillespie's direct method) of ``--n`` SIR trajectories (default 10 000,
  N = 1000, R0 = 2, gamma = 1, one initial infective, until ``--t-end``) with
  ``epinn.stochastic.simulate`` (one compiled call, vectorised over members), against a
  per-trajectory Gillespie loop compiled with numba (the same algorithm, its rates written
  out by hand for SIR; serial, and ``prange`` over trajectories on all cores) in the same
  run. Reported: events per second (events = infections + recoveries), and the ratio.
* Tau-leaping with steps ``--tau-dt``: time, speed-up over exact simulation, and how close
  its final-size distribution is to the exact one (chi-square two-sample p-value and
  total-variation distance, on sizes pooled into about 19 bins); "matched" = p > 0.01.

numba is a benchmark extra (``pip install numba``); without it the compiled loop is
skipped and the output says so. epinn is timed warm (compilation reported separately).

    python benchmarks/bench_stochastic.py [--n 10000] [--N 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import stats

from epinn.compartmental import SIR
from epinn.stochastic import final_sizes, simulate

try:
    import numba
except ImportError:  # a benchmark extra
    numba = None

def size_edges(N: int) -> list[int]:
    """Bins of final sizes: the minor outbreaks one by one, then fractions of ``N``."""
    small = [0, 1, 2, 3, 5, 10, 20, 50]
    return small + sorted({max(51, int(f * N)) for f in
                           (0.1, 0.2, 0.4, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.86, 0.9)}) + [
        N + 1]


def time_epinn(params, y0, ts, n, seed, **kw):
    """(seconds warm, seconds of the first call, simulation) for one configuration."""
    t0 = time.perf_counter()
    sim = simulate(SIR(), params, y0, ts, key=jr.key(seed + 1000), n=n, **kw)
    jax.block_until_ready(sim.ys)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = simulate(SIR(), params, y0, ts, key=jr.key(seed), n=n, **kw)
    jax.block_until_ready(sim.ys)
    return time.perf_counter() - t0, first, sim


def _sir_loop(n, S0, I0, beta, gamma, N, t_end, final, events):
    """Gillespie's direct method, one SIR trajectory after another (numba compiles it)."""
    for m in numba.prange(n):  # prange is range unless compiled with parallel=True
        S, inf, t, e = S0, I0, 0.0, 0
        while inf > 0:
            a1 = beta * S * inf / N
            a0 = a1 + gamma * inf
            t += -np.log(1.0 - np.random.random()) / a0
            if t > t_end:
                break
            if np.random.random() * a0 < a1:
                S -= 1
                inf += 1
            else:
                inf -= 1
            e += 1
        final[m] = S0 - S
        events[m] = e


def numba_loops():
    """Serial and parallel compiled Gillespie loops over SIR trajectories (or None)."""
    if numba is None:
        return None
    return {"numba serial": numba.njit(_sir_loop),
            "numba parallel": numba.njit(parallel=True)(_sir_loop)}


def run_numba(fn, n, S0, I0, beta, gamma, N, t_end):
    final, events = np.zeros(n, np.int64), np.zeros(n, np.int64)
    fn(4, S0, I0, beta, gamma, N, t_end, final[:4], events[:4])  # compile
    t0 = time.perf_counter()
    fn(n, S0, I0, beta, gamma, N, t_end, final, events)
    return time.perf_counter() - t0, final, events


def compare(a: np.ndarray, b: np.ndarray, N: int) -> tuple[float, float]:
    """Chi-square two-sample p-value and total-variation distance, on final sizes pooled
    into the bins :func:`size_edges`."""
    edges = size_edges(N)
    table = np.stack([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
    table = table[:, table.sum(0) > 0]
    p = float(stats.chi2_contingency(table).pvalue)
    tv = 0.5 * np.abs(table[0] / len(a) - table[1] / len(b)).sum()
    return p, float(tv)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="trajectories")
    ap.add_argument("--N", type=int, default=1000, help="population")
    ap.add_argument("--R0", type=float, default=2.0)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=60.0)
    ap.add_argument("--tau-dt", type=float, nargs="+", default=[0.5, 0.2, 0.1])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    N, n = args.N, args.n
    beta = args.R0 * args.gamma
    params = {"beta": beta, "gamma": args.gamma, "N": float(N)}
    y0 = [N - 1, 1, 0]
    ts = np.array([0.0, args.t_end])
    info = {"jax": jax.__version__, "backend": jax.default_backend(),
            "devices": str(jax.devices()), "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "n": n, "N": N, "R0": args.R0, "gamma": args.gamma, "t_end": args.t_end}
    print(json.dumps(info))
    rows = {}

    t, first, sim = time_epinn(params, y0, ts, n, args.seed)
    exact_sizes = np.asarray(final_sizes(sim))
    events = int(np.asarray(sim.events, np.int64).sum())
    still = float(np.mean(np.asarray(sim["I"][:, -1]) > 0))
    rows["epinn exact"] = dict(seconds=t, first_call_s=first, events=events,
                               events_per_s=events / t,
                               mean_final_size=float(exact_sizes.mean()),
                               infected_at_t_end=still)

    loops = numba_loops()
    if loops is None:
        print("numba is not installed: the compiled loop is skipped (pip install numba)")
    else:
        for name, fn in loops.items():
            tn, final, ev = run_numba(fn, n, N - 1, 1, beta, args.gamma, float(N), args.t_end)
            p, tv = compare(exact_sizes, final, N)
            rows[name] = dict(seconds=tn, events=int(ev.sum()), events_per_s=ev.sum() / tn,
                              mean_final_size=float(final.mean()), chi2_p_vs_epinn=p,
                              tv_vs_epinn=tv)
            rows["epinn exact"][f"ratio_vs_{name.replace(' ', '_')}"] = (
                rows["epinn exact"]["events_per_s"] / rows[name]["events_per_s"])

    for dt in args.tau_dt:
        tt, first, tau = time_epinn(params, y0, ts, n, args.seed + 1, method="tau_leap", dt=dt)
        sizes = np.asarray(final_sizes(tau))
        p, tv = compare(exact_sizes, sizes, N)
        rows[f"epinn tau_leap dt={dt:g}"] = dict(
            seconds=tt, first_call_s=first, speedup_vs_exact=t / tt, chi2_p_vs_exact=p,
            tv_vs_exact=tv, matched=p > 0.01, mean_final_size=float(sizes.mean()))

    width = max(len(k) for k in rows)
    for name, r in rows.items():
        cells = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in r.items())
        print(f"{name:<{width}}  {cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=1, default=float)
    return rows


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
