"""Benchmark: an ensemble of SIR solves with epinn against scipy (issue #3).

Set-up: normalised SIR (N = 1), s0 = 0.999, i0 = 0.001, r0 = 0, t in [0, 160] saved at
161 points, ``--members`` (10 000) pairs beta ~ U(0.1, 1.0), gamma ~ U(0.05, 0.5) drawn from
``jax.random.PRNGKey(seed)`` (seed 0), rtol = 1e-6, atol = 1e-9.

Compared in one run:

* epinn :func:`~epinn.solve_ensemble` (``method="stacked"``: diffrax's
  Tsit5 step and PID controller on each chunk's stacked state, with a max-over-members
  error norm), on ``--devices`` XLA host devices (default: one per available core; each
  device solves a block of the members) and, when that is more than one, on one device
  beside it; optionally ``method="vmap"``. XLA compiles loops whose state is at most
  ``--loop-kernel-bytes`` (32 MiB) into single kernels (:func:`epinn.configure_cpu`; XLA's
  CPU runtime otherwise runs each operation of the solver's step loop as a task of its
  own, jax-ml/jax#26021); ``--loop-kernel-bytes 0`` times XLA's default;
* scipy ``solve_ivp`` (RK45) in a Python loop: a subset (``--loop-subset``, 300) is timed
  and the time **extrapolated** to all members;
* one scipy ``solve_ivp`` (RK45) over all members stacked into a single 3M-dimensional
  system with a numpy right-hand side. Note that scipy's error norm is the RMS over all
  3M components (an average over members), a weaker control than epinn's max norm.

Accuracy: every member is compared with a reference, scipy DOP853 on the stacked system at
rtol 1e-10 (atol 1e-13), itself checked against per-member DOP853 at rtol 1e-12 on a few
members. Reported: compile time (first call minus a warm call), warm wall time (best of
``--repeats`` calls, 15; the stacked scipy system gets as many calls: on a shared machine the
best of few calls varies by tens of percent), solves/s, speed-ups and max |difference| to
the reference. A JSON summary goes to ``--json`` if given.

Run: ``python benchmarks/bench_sir_ensemble.py`` (add ``--x64`` for float64 epinn,
``--devices 1`` for one XLA device, ``--loop-kernel-bytes 0`` for XLA's default loops). The
flags in effect are printed in the first line and stored in the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from _host_devices import available_cores, request_host_devices

# One XLA host device per core (before JAX starts): each device solves its own block of
# members, so the blocks run on all cores. ``--devices 1`` for a single device. And XLA
# compiles the solver's step loop into one kernel (``--loop-kernel-bytes 0``: XLA's
# default, a task per operation and step).
DEVICES = request_host_devices(sys.argv[1:], loop_kernels=True)

S0, I0, T1, NT = 0.999, 0.001, 160.0, 161
RTOL, ATOL = 1e-6, 1e-9


def _draw(seed: int, members: int) -> tuple[np.ndarray, np.ndarray]:
    import jax.random as jr

    kb, kg = jr.split(jr.PRNGKey(seed))
    beta = np.asarray(jr.uniform(kb, (members,), minval=0.1, maxval=1.0), np.float64)
    gamma = np.asarray(jr.uniform(kg, (members,), minval=0.05, maxval=0.5), np.float64)
    return beta, gamma


def _stacked_rhs(beta: np.ndarray, gamma: np.ndarray):
    m = beta.size

    def rhs(t, y):
        s, i = y[:m], y[m : 2 * m]
        new, rec = beta * s * i, gamma * i
        return np.concatenate([-new, new - rec, rec])

    return rhs


def _y0_stacked(m: int) -> np.ndarray:
    return np.concatenate([np.full(m, S0), np.full(m, I0), np.zeros(m)])


def _scipy_stacked(beta, gamma, ts, method, rtol, atol) -> np.ndarray:
    from scipy.integrate import solve_ivp

    m = beta.size
    sol = solve_ivp(
        _stacked_rhs(beta, gamma), (0.0, T1), _y0_stacked(m), method=method, t_eval=ts,
        rtol=rtol, atol=atol,
    )
    assert sol.success, sol.message
    return sol.y.reshape(3, m, ts.size).transpose(1, 2, 0)  # members x time x compartments


def _scipy_one(b, g, ts, method, rtol, atol) -> np.ndarray:
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        new = b * y[0] * y[1]
        return [-new, new - g * y[1], g * y[1]]

    sol = solve_ivp(rhs, (0.0, T1), [S0, I0, 0.0], method=method, t_eval=ts, rtol=rtol,
                    atol=atol)
    assert sol.success, sol.message
    return sol.y.T


def _best(fn, repeats: int) -> tuple[float, float, float, object]:
    """Best wall, process-CPU and calling-thread-CPU time of ``repeats`` calls (+ result).

    The thread CPU time is a load-robust measure for single-threaded scipy code on a shared
    machine; it is meaningless for jax, which computes on XLA's own threads.
    """
    walls, cpus, threads, out = [], [], [], None
    for _ in range(repeats):
        w, c, th = time.perf_counter(), time.process_time(), time.thread_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        threads.append(time.thread_time() - th)
    return min(walls), min(cpus), min(threads), out


def main(args: argparse.Namespace) -> dict:
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from epinn import SIR, solve_ensemble

    M = args.members
    ts = np.linspace(0.0, T1, NT)
    beta, gamma = _draw(args.seed, M)
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {jax.device_count()} x {device.platform} "
          f"({device.device_kind}; {platform.processor() or platform.machine()}, "
          f"{available_cores()} cores), float{'64' if args.x64 else '32'}, {M} members; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")

    # Reference: rtol 1e-10 on the stacked system, spot-checked per member at rtol 1e-12.
    w = time.perf_counter()
    ref = _scipy_stacked(beta, gamma, ts, "DOP853", 1e-10, 1e-13)
    spot = np.linspace(0, M - 1, min(args.spot_checks, M)).astype(int)
    ref_check = max(
        np.abs(_scipy_one(beta[k], gamma[k], ts, "DOP853", 1e-12, 1e-14) - ref[k]).max()
        for k in spot
    )
    print(f"reference: DOP853 rtol 1e-10 stacked ({time.perf_counter() - w:.1f} s); "
          f"max |diff| to per-member rtol 1e-12 on {spot.size} members: {ref_check:.1e}")

    params = {"beta": jnp.asarray(beta), "gamma": jnp.asarray(gamma), "N": 1.0}
    y0 = jnp.array([S0, I0, 0.0])
    results: dict[str, dict] = {}

    import epinn

    # The same SIR written by a user through the public flow API (lambdas, no built-in).
    user_sir = epinn.Model(
        ("S", "I", "R"), ("beta", "gamma"),
        [epinn.infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
         epinn.flow("I", "R", lambda t, y, p: p.gamma * y.I)], name="user SIR")

    def run_epinn(method: str, mesh=None, model=None) -> dict:
        model = SIR() if model is None else model

        def call():
            traj = solve_ensemble(model, params, y0, jnp.asarray(ts), method=method,
                                  chunk_size=args.chunk_size, rtol=RTOL, atol=ATOL, mesh=mesh)
            return jax.block_until_ready(traj)

        w = time.perf_counter()
        traj = call()
        first = time.perf_counter() - w
        repeats = args.repeats if method == "stacked" else max(1, args.repeats // 2)
        wall, cpu, _, traj = _best(call, repeats)
        ys = np.asarray(traj.ys, np.float64)
        return {
            "compile_s": first - wall,
            "wall_s": wall,
            "cpu_s": cpu,
            "solves_per_s": M / wall,
            "max_abs_diff": float(np.abs(ys - ref).max()),
            "all_success": bool(np.asarray(traj.success).all()),
            "max_steps_in_a_chunk": int(np.asarray(traj.num_steps).max()),
        }

    results["epinn_stacked"] = run_epinn("stacked")  # all devices (the default mesh)
    results["epinn_user_model"] = run_epinn("stacked", model=user_sir)
    if jax.device_count() > 1:
        results["epinn_1device"] = run_epinn("stacked", mesh=False)
    if args.vmap:
        results["epinn_vmap"] = run_epinn("vmap")

    n = min(args.loop_subset, M)

    def loop():
        return np.stack([_scipy_one(beta[k], gamma[k], ts, "RK45", RTOL, ATOL) for k in range(n)])

    wall, cpu, thread, ys = _best(loop, 1)
    results["scipy_loop"] = {
        "timed_members": n,
        "wall_s": wall * M / n,  # extrapolated from the timed subset
        "cpu_s": cpu * M / n,
        "thread_cpu_s": thread * M / n,
        "solves_per_s": n / wall,
        "max_abs_diff": float(np.abs(ys - ref[:n]).max()),
        "extrapolated": True,
    }

    wall, cpu, thread, ys = _best(
        lambda: _scipy_stacked(beta, gamma, ts, "RK45", RTOL, ATOL),
        args.scipy_repeats or args.repeats,
    )
    results["scipy_stacked"] = {
        "wall_s": wall,
        "cpu_s": cpu,
        "thread_cpu_s": thread,
        "solves_per_s": M / wall,
        "max_abs_diff": float(np.abs(ys - ref).max()),
    }

    ep = results["epinn_stacked"]
    speedup_loop = results["scipy_loop"]["wall_s"] / ep["wall_s"]
    speedup_stacked = results["scipy_stacked"]["wall_s"] / ep["wall_s"]
    # Load-robust variant: scipy's own thread CPU time against epinn's best wall time.
    speedup_stacked_cpu = results["scipy_stacked"]["thread_cpu_s"] / ep["wall_s"]
    summary = {
        "members": M,
        "seed": args.seed,
        "dtype": "float64" if args.x64 else "float32",
        "platform": jax.devices()[0].platform,
        "devices": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "chunk_size": args.chunk_size or "auto",
        "reference_check": float(ref_check),
        "results": results,
        "speedup_vs_scipy_loop": speedup_loop,
        "speedup_vs_scipy_stacked": speedup_stacked,
        "speedup_vs_scipy_stacked_1device": (
            results["scipy_stacked"]["wall_s"] / results["epinn_1device"]["wall_s"]
            if "epinn_1device" in results else speedup_stacked
        ),
        "speedup_vs_scipy_stacked_thread_cpu": speedup_stacked_cpu,
        "user_model_over_builtin": results["epinn_user_model"]["wall_s"] / ep["wall_s"],
        "targets_met": {
            "loop>=300x": speedup_loop >= 300,
            "stacked>=10x": speedup_stacked >= 10,
            "max_diff<=1e-5": ep["max_abs_diff"] <= 1e-5,
            "user_model_within_10%": results["epinn_user_model"]["wall_s"] <= 1.1 * ep["wall_s"],
        },
    }
    print(f"{'':16s}{'wall s':>10s}{'cpu s':>10s}{'solves/s':>12s}{'compile s':>11s}"
          f"{'max|diff|':>11s}")
    for name, r in results.items():
        label = name + (" *" if r.get("extrapolated") else "")
        comp = f"{r['compile_s']:11.2f}" if "compile_s" in r else f"{'':11s}"
        print(f"{label:16s}{r['wall_s']:10.4f}{r['cpu_s']:10.4f}{r['solves_per_s']:12.0f}"
              f"{comp}{r['max_abs_diff']:11.1e}")
    print(f"* timed on {n} members, extrapolated to {M}")
    print(f"speed-up vs scipy loop: {speedup_loop:.0f}x (target 300x); vs scipy stacked: "
          f"{speedup_stacked:.1f}x (target 10x; {speedup_stacked_cpu:.1f}x against scipy's "
          f"thread CPU time); targets met: {summary['targets_met']}")
    print(f"the user-defined SIR (epinn.Model) takes {summary['user_model_over_builtin']:.2f}x "
          "the built-in SIR's time (target <= 1.1x)")
    if "epinn_1device" in results:
        print(f"on one XLA device: {summary['speedup_vs_scipy_stacked_1device']:.1f}x the "
              "scipy stacked system")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=None,
                   help="members per chunk (default: the library's: on CPU 256 with the loop "
                        "flag, else 1024; 16384 on GPU)")
    p.add_argument("--loop-subset", type=int, default=300)
    p.add_argument("--repeats", type=int, default=15,
                   help="timed calls of epinn; the best is reported (default 15)")
    p.add_argument("--scipy-repeats", type=int, default=None,
                   help="timed calls of the stacked scipy system (default: --repeats, so "
                   "that both report the best of as many calls)")
    p.add_argument("--spot-checks", type=int, default=20)
    p.add_argument("--vmap", action="store_true", help="also time method='vmap'")
    p.add_argument("--x64", action="store_true", help="run epinn in float64")
    p.add_argument("--json", type=str, default=None, help="write the results here")
    p.add_argument("--devices", type=int, default=DEVICES,
                   help="XLA host devices, each solving a block of members (default: the "
                   "available cores); with more than one, one device is timed beside it")
    p.add_argument("--loop-kernel-bytes", type=int, default=None,
                   help="XLA compiles loops whose state is at most this many bytes into one "
                   "kernel (epinn.configure_cpu; default 32 MiB; 0: XLA's default)")
    args = p.parse_args(argv)
    if args.devices != DEVICES:  # e.g. parse_args(["--devices", "1"]) after JAX started
        p.error(f"--devices {args.devices} must be given on the command line: XLA reads "
                f"its flags at start-up, with {DEVICES} host devices here.")
    return args


if __name__ == "__main__":
    main(parse_args())
