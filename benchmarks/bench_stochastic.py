"""Benchmark: stochastic SIR ensembles, epinn's simulators against compiled loops.

* Exact simulation (Gillespie's direct method) of ``--n`` SIR trajectories (default 10 000,
  N = 1000, R0 = 2, gamma = 1, one initial infective, until ``--t-end``) with
  ``epinn.stochastic.simulate`` (one compiled call, vectorised over members), against a
  per-trajectory Gillespie loop compiled with numba (the same algorithm, its rates written
  out by hand for SIR; serial, and ``prange`` over trajectories on all cores) and against
  GillesPy2's fastest exact solver (``SSACSolver``, compiled C++) in the same run.
  Reported: events per second (events = infections + recoveries), and the ratios.
* Tau-leaping with fixed steps ``--tau-dt`` and with the adaptive step (``dt=None``,
  epsilon 0.03): time, speed-up over exact simulation, and how close its final-size
  distribution is to the exact one (chi-square two-sample p-value and total-variation
  distance, on sizes pooled into about 19 bins); "matched" = p > 0.01.
* Summaries only (``simulate_summaries``, chunks of ``--chunk``): ensembles of
  ``--summaries-n`` members (tau-leaping with the largest matched fixed step, else exact);
  time and the process's peak resident memory after each, the bytes per member, and the
  largest ensemble that the memory available now would hold that way.

numba and gillespy2 are benchmark extras; without one, its row is skipped and the output
says why. epinn is timed warm (compilation reported separately).

    python benchmarks/bench_stochastic.py [--n 10000] [--N 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import stats

from epinn import SIR
from epinn.stochastic import final_sizes, simulate, simulate_summaries

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


def gillespy2_ssa(n, N, beta, gamma, t_end, seed):
    """(seconds, build seconds, final sizes, events, solver name) of GillesPy2's SSACSolver
    on the same SIR (rates beta S I / N and gamma I), or a string saying why not."""
    try:
        import gillespy2
    except ImportError as e:  # a benchmark extra
        return f"gillespy2 is not installed ({e}); pip install gillespy2"
    try:
        model = gillespy2.Model(name="SIR")
        model.add_parameter([gillespy2.Parameter(name="beta", expression=beta),
                             gillespy2.Parameter(name="gamma", expression=gamma),
                             gillespy2.Parameter(name="N", expression=float(N))])
        sus, inf, rec = (gillespy2.Species(name=c, initial_value=v, mode="discrete")
                         for c, v in (("S", N - 1), ("I", 1), ("R", 0)))
        model.add_species([sus, inf, rec])
        model.add_reaction([
            gillespy2.Reaction(name="infection", reactants={sus: 1, inf: 1},
                               products={inf: 2}, propensity_function="beta*S*I/N"),
            gillespy2.Reaction(name="recovery", reactants={inf: 1}, products={rec: 1},
                               propensity_function="gamma*I")])
        model.timespan(np.array([0.0, t_end]))
        t0 = time.perf_counter()
        solver = gillespy2.SSACSolver(model=model)  # compiles the model (C++)
        solver.run(number_of_trajectories=4, seed=seed + 7)  # seeds must be positive
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = solver.run(number_of_trajectories=n, seed=seed + 1)
        seconds = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 (report any failure of the optional reference)
        return f"gillespy2 {gillespy2.__version__} failed: {type(e).__name__}: {e}"
    S_end = np.array([r["S"][-1] for r in res], np.int64)
    R_end = np.array([r["R"][-1] for r in res], np.int64)
    final = (N - 1) - S_end
    return seconds, build, final, int(final.sum() + R_end.sum()), "SSACSolver"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_mib() -> float:
    """Memory available to new allocations now (MemAvailable, MiB), or NaN."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def summaries_only(params, y0, ts, sizes, chunk, seed, kw):
    """Rows of simulate_summaries for growing ensembles: seconds, peak RSS, bytes/member."""
    rows = {}
    simulate_summaries(SIR(), params, y0, ts, key=jr.key(seed), n=chunk, chunk=chunk, **kw)
    base = peak_rss_mib()
    for n in sizes:
        t0 = time.perf_counter()
        s = simulate_summaries(SIR(), params, y0, ts, key=jr.key(seed), n=n, chunk=chunk, **kw)
        sec = time.perf_counter() - t0
        kept = sum(np.asarray(v).nbytes for v in s)
        rows[f"summaries only n={n}"] = dict(
            seconds=sec, members_per_s=n / sec, peak_rss_mib=peak_rss_mib(),
            rss_growth_mib=peak_rss_mib() - base, kept_bytes_per_member=kept / n,
            trajectories_would_take_mib=n * len(ts) * (3 + 2) * 4 / 2**20)
        del s
    return rows


def large_population(args) -> dict:
    """Exact simulation against adaptive and fixed-step tau-leaping at ``--large-N``
    (five initial infectives, so that few outbreaks fizzle): time, steps and the final
    sizes of the major outbreaks (mean, and the KS two-sample p-value against exact)."""
    N, n = args.large_N, args.large_n
    params = {"beta": args.R0 * args.gamma, "gamma": args.gamma, "N": float(N)}
    y0, ts = [N - 5, 5, 0], np.array([0.0, args.t_end])
    out, exact = {}, None
    for name, kw in [("exact", {}), ("tau_leap adaptive", dict(method="tau_leap")),
                     ("tau_leap dt=0.1", dict(method="tau_leap", dt=0.1)),
                     ("tau_leap dt=0.02", dict(method="tau_leap", dt=0.02))]:
        sec, first, sim = time_epinn(params, y0, ts, n, args.seed + 3, **kw)
        sizes = np.asarray(final_sizes(sim))
        major = sizes[sizes > N // 10]
        row = dict(seconds=sec, first_call_s=first,
                   mean_steps=float(np.asarray(sim.steps, np.float64).mean()),
                   mean_major_final_size=float(major.mean()),
                   se_major_final_size=float(major.std(ddof=1) / np.sqrt(len(major))))
        if exact is None:
            exact = (sec, major)
        else:
            row["speedup_vs_exact"] = exact[0] / sec
            row["ks_p_vs_exact"] = float(stats.ks_2samp(exact[1], major).pvalue)
        out[f"N={N} {name}"] = row
    return out


def compare(a: np.ndarray, b: np.ndarray, N: int) -> tuple[float, float]:
    """Chi-square two-sample p-value and total-variation distance, on final sizes pooled
    into the bins :func:`size_edges`."""
    edges = size_edges(N)
    table = np.stack([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
    table = table[:, table.sum(0) > 0]
    p = float(stats.chi2_contingency(table).pvalue)
    tv = 0.5 * np.abs(table[0] / len(a) - table[1] / len(b)).sum()
    return p, float(tv)


def show(rows: dict, done: set) -> None:
    """Print the rows not printed yet (so a long run shows its numbers as it goes)."""
    for name, r in rows.items():
        if name not in done:
            cells = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in r.items())
            print(f"{name}  {cells}", flush=True)
            done.add(name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="trajectories")
    ap.add_argument("--N", type=int, default=1000, help="population")
    ap.add_argument("--R0", type=float, default=2.0)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=60.0)
    ap.add_argument("--tau-dt", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05, 0.02])
    ap.add_argument("--summaries-n", type=int, nargs="*",
                    default=[100_000, 1_000_000],
                    help="ensemble sizes of the summaries-only runs (none: skip them)")
    ap.add_argument("--chunk", type=int, default=20_000, help="members per compiled call")
    ap.add_argument("--large-N", type=int, default=100_000,
                    help="population of the exact vs adaptive tau-leaping comparison "
                         "(0: skip it)")
    ap.add_argument("--large-n", type=int, default=1000,
                    help="trajectories of that comparison")
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

    gp = gillespy2_ssa(n, N, beta, args.gamma, args.t_end, args.seed)
    if isinstance(gp, str):
        print(f"GillesPy2 skipped: {gp}")
    else:
        tg, build, final, ev, solver = gp
        p, tv = compare(exact_sizes, final, N)
        name = f"gillespy2 {solver}"
        rows[name] = dict(seconds=tg, build_s=build, events=ev, events_per_s=ev / tg,
                          mean_final_size=float(final.mean()), chi2_p_vs_epinn=p,
                          tv_vs_epinn=tv)
        rows["epinn exact"]["ratio_vs_gillespy2"] = (
            rows["epinn exact"]["events_per_s"] / rows[name]["events_per_s"])

    done = set()
    show(rows, done)
    matched = []
    for dt in [*args.tau_dt, None]:
        tt, first, tau = time_epinn(params, y0, ts, n, args.seed + 1, method="tau_leap", dt=dt)
        sizes = np.asarray(final_sizes(tau))
        p, tv = compare(exact_sizes, sizes, N)
        name = f"epinn tau_leap dt={dt:g}" if dt is not None else "epinn tau_leap adaptive"
        rows[name] = dict(
            seconds=tt, first_call_s=first, speedup_vs_exact=t / tt, chi2_p_vs_exact=p,
            tv_vs_exact=tv, matched=p > 0.01, mean_final_size=float(sizes.mean()),
            mean_steps=float(np.asarray(tau.steps).mean()))
        if p > 0.01:
            matched.append((t / tt, name, dt))
    if matched:
        best = max(matched)
        print(f"tau-leaping's largest speed-up over exact at a matched final-size "
              f"distribution (chi-square p > 0.01): {best[0]:.3g}x ({best[1]})")
    else:
        print("no tau-leaping setting matched the exact final-size distribution (p > 0.01)")

    show(rows, done)
    if args.large_N:
        rows.update(large_population(args))
        show(rows, done)

    if args.summaries_n:
        # exact or the fastest tau-leaping that matched its final sizes
        kw = min([(t, {}), *((t / m[0], dict(method="tau_leap", dt=m[2])) for m in matched)],
                 key=lambda c: c[0])[1]
        days = np.linspace(0.0, args.t_end, int(args.t_end) + 1)  # daily, for the peaks
        print(f"summaries only: {kw or 'exact'}, {len(days)} save times, chunks of "
              f"{args.chunk}")
        srows = summaries_only(params, y0, days, args.summaries_n, args.chunk, args.seed, kw)
        rows.update(srows)
        last = srows[f"summaries only n={args.summaries_n[-1]}"]
        first_row = srows[f"summaries only n={args.summaries_n[0]}"]
        grown = last["peak_rss_mib"] - first_row["peak_rss_mib"]
        more = args.summaries_n[-1] - args.summaries_n[0]
        per_member = max(grown * 2**20 / more if more > 0 else 0.0,
                         last["kept_bytes_per_member"])
        avail = available_mib()
        rows["summaries only: memory"] = dict(
            bytes_per_member=per_member, available_mib=avail,
            largest_ensemble_in_available_memory=avail * 2**20 / per_member,
            largest_measured=args.summaries_n[-1])
        show(rows, done)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=1, default=float)
    return rows


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
