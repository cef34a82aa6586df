"""Benchmark: an age-structured SEIR ensemble (3 groups, a contact matrix) against scipy.

The model is written by the user in the flow language (:class:`epinn.Model`, groups and a
contact matrix). ``--members`` members draw beta (and so R0) at random; all share the
contact matrix and group sizes. epinn's :func:`~epinn.solve_ensemble` (one stacked solve
per chunk) runs against scipy's ``solve_ivp`` (RK45, the same tolerances) on all members as
one stacked system, in the same process; both are checked against a DOP853 reference at
rtol 1e-10. Prints wall times and the ratio (target: epinn >= 10x the stacked scipy system).

    python benchmarks/bench_seir_groups.py --members 10000 --json results/seir_groups.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

T1, NT, RTOL, ATOL = 160.0, 81, 1e-6, 1e-8
N = np.array([3000.0, 5000.0, 2000.0])
C = np.array([[2.0, 0.6, 0.2], [0.6, 1.2, 0.4], [0.2, 0.4, 0.8]])
SIGMA, GAMMA = 0.25, np.array([0.2, 0.15, 0.1])
I0 = np.array([1.0, 2.0, 0.0])


def _model():
    import epinn

    return epinn.Model(
        ("S", "E", "I", "R"),
        {"beta": (), "sigma": (), "gamma": ("groups",), "C": ("groups", "groups")},
        [epinn.infection("S", "E", lambda t, y, p: p.beta * y.S * (p.C @ (y.I / p.N))),
         epinn.flow("E", "I", lambda t, y, p: p.sigma * y.E),
         epinn.flow("I", "R", lambda t, y, p: p.gamma * y.I)],
        groups=3, name="SEIR by age")


def _scipy_stacked(beta, ts, method, rtol, atol):
    """All members as one system of 12 M equations, in fractions of the total (like epinn)."""
    from scipy.integrate import solve_ivp

    M, n = beta.shape[0], N / N.sum()

    def rhs(t, z):
        S, E, I, _ = z.reshape(4, 3, M)
        new = beta * S * (C @ (I / n[:, None]))
        return np.concatenate([-new, new - SIGMA * E, SIGMA * E - GAMMA[:, None] * I,
                               GAMMA[:, None] * I]).ravel()

    y0 = np.concatenate([(N - I0), np.zeros(3), I0, np.zeros(3)]) / N.sum()
    z0 = np.repeat(y0[:, None], M, axis=1).ravel()
    sol = solve_ivp(rhs, (ts[0], ts[-1]), z0, t_eval=ts, method=method, rtol=rtol, atol=atol)
    return (sol.y.reshape(4, 3, M, -1) * N.sum()).transpose(2, 3, 0, 1)  # (M, T, C, G)


def _best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        w = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - w)
    return best, out


def main(args) -> dict:
    import jax
    import jax.numpy as jnp

    import epinn

    rng = np.random.default_rng(args.seed)
    beta = rng.uniform(0.1, 0.4, args.members)
    ts = np.linspace(0.0, T1, NT)
    model = _model()
    params = {"beta": jnp.asarray(beta), "sigma": SIGMA, "gamma": GAMMA, "C": C, "N": N}
    y0 = {"S": N - I0, "E": np.zeros(3), "I": I0, "R": np.zeros(3)}
    print(f"jax {jax.__version__} on {jax.device_count()} x {jax.devices()[0].platform} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
          f"{args.members} members of a 3-group SEIR")

    def run():
        traj = epinn.solve_ensemble(model, params, y0, jnp.asarray(ts), rtol=RTOL, atol=ATOL)
        return jax.block_until_ready(traj)

    w = time.perf_counter()
    run()
    compile_s = time.perf_counter() - w
    ep_s, traj = _best(run, args.repeats)
    sc_s, ys_scipy = _best(lambda: _scipy_stacked(beta, ts, "RK45", RTOL, ATOL), args.repeats)
    ref = _scipy_stacked(beta[: args.check], ts, "DOP853", 1e-10, 1e-12)
    err = float(np.abs(np.asarray(traj.ys[: args.check], np.float64) - ref).max())
    err_scipy = float(np.abs(ys_scipy[: args.check] - ref).max())
    out = {"members": args.members, "epinn_s": ep_s, "epinn_compile_s": compile_s - ep_s,
           "scipy_stacked_s": sc_s, "speedup": sc_s / ep_s, "max_abs_diff": err,
           "scipy_max_abs_diff": err_scipy, "all_success": bool(np.asarray(traj.success).all()),
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
    print(f"epinn {ep_s * 1e3:.1f} ms (compile {out['epinn_compile_s']:.1f} s), scipy stacked "
          f"{sc_s * 1e3:.0f} ms: {out['speedup']:.1f}x (target 10x); max |diff| to the "
          f"reference: epinn {err:.1e}, scipy {err_scipy:.1e} (people)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--check", type=int, default=20, help="members checked against DOP853")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
