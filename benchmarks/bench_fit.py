"""Benchmark: the boarding-school least-squares SIR fit, epinn vs scipy, in one run.

* Single fit: ``epinn.fit_parameters`` (Levenberg-Marquardt through diffrax, forward-mode
  Jacobians) against ``scipy.optimize.least_squares`` + ``scipy.integrate.solve_ivp``
  (RK45) on the boarding-school data (S0 = 762, I0 = 1 at day 0, days 1..14 observed).
  epinn is timed cold (compilation included, first call in the process) and warm (median of
  repeated calls on fresh data of the same shape).
* Batch: 1000 fits to simulated noisy curves (beta ~ U(1.2, 2.2), gamma ~ U(0.3, 0.6)),
  ``epinn.fit_parameters_batch`` (one compiled call; ``--method stacked``, this script's
  default: blocks of ``--batch-size`` fits on one shared-step ODE; ``--method vmap``, the
  library's default: optimistix under ``jax.vmap``) against a scipy loop (timed
  on ``--scipy-subset`` fits and extrapolated, which the output says), with the largest
  relative difference between the optima.

Both sides run in float64 with ODE tolerances rtol = 1e-8, atol = 1e-10 (epinn's atol is on
population fractions, scipy's on counts; both are far below the data's noise).

    python benchmarks/bench_fit.py [--n-batch 1000] [--scipy-subset 100]

Targets (issue 4): warm single fit >= 5x faster than scipy, cold < 3 s; batch >= 50x faster
than the scipy loop, same optima to 1e-4 relative.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import epinn  # noqa: E402
from epinn import SIR, solve_ensemble  # noqa: E402

COUNTS = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4], float)
DAYS = np.arange(1.0, 15.0)
N = 763.0
Y0 = {"S": 762.0, "I": 1.0, "R": 0.0}
INIT = {"beta": 1.0, "gamma": 0.3, "N": N}


def scipy_fit(counts: np.ndarray) -> np.ndarray:
    def residuals(theta):
        b, g = np.exp(theta)

        def f(t, y):
            inf = b * y[0] * y[1] / N
            return [-inf, inf - g * y[1], g * y[1]]

        sol = solve_ivp(f, (0.0, 14.0), [762.0, 1.0, 0.0], t_eval=np.arange(0.0, 15.0),
                        rtol=1e-8, atol=1e-10)
        return sol.y[1, 1:] - counts

    res = least_squares(residuals, np.log([1.0, 0.3]), xtol=1e-10, ftol=1e-10)
    return np.exp(res.x)


def epinn_fit(counts: np.ndarray) -> np.ndarray:
    r = epinn.fit_parameters(SIR(), DAYS, {"I": counts}, y0=Y0, init=INIT, t0=0.0)
    return np.array([r.params["beta"], r.params["gamma"]])


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    beta, gamma = rng.uniform(1.2, 2.2, n), rng.uniform(0.3, 0.6, n)
    grid = np.arange(0.0, 15.0)
    traj = solve_ensemble(SIR(), {"beta": beta, "gamma": gamma, "N": N},
                                np.array([762.0, 1.0, 0.0]), grid, rtol=1e-10, atol=1e-12)
    clean = np.asarray(traj["I"])[:, 1:]
    noisy = np.clip(clean + rng.normal(0.0, 5.0, clean.shape), 0.0, None)
    return noisy, np.stack([beta, gamma], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-batch", type=int, default=1000)
    p.add_argument("--scipy-subset", type=int, default=100)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128, help="fits vectorised together")
    p.add_argument("--method", default="stacked", choices=("stacked", "vmap"),
                   help="fit_parameters_batch method")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args()

    # Single fit.
    t = time.perf_counter()
    e_cold = epinn_fit(COUNTS)
    cold = time.perf_counter() - t
    warm_times = []
    for i in range(a.repeats):
        c = COUNTS * (1.0 + 1e-3 * (i + 1))  # fresh data, same shapes: no recompilation
        t = time.perf_counter()
        epinn_fit(c)
        warm_times.append(time.perf_counter() - t)
    warm = float(np.median(warm_times))
    sc_times = []
    for _ in range(max(3, a.repeats // 4)):
        t = time.perf_counter()
        s_opt = scipy_fit(COUNTS)
        sc_times.append(time.perf_counter() - t)
    sc = float(np.median(sc_times))
    rel = np.max(np.abs(e_cold / s_opt - 1.0))
    print("single boarding-school fit")
    print(f"  scipy least_squares+solve_ivp : {sc * 1e3:9.2f} ms   beta, gamma = {s_opt}")
    print(f"  epinn cold (compile included) : {cold * 1e3:9.2f} ms")
    print(f"  epinn warm (median)           : {warm * 1e3:9.2f} ms   beta, gamma = {e_cold}")
    print(f"  warm speed-up vs scipy        : {sc / warm:9.1f}x   (target >= 5x)")
    print(f"  max relative difference       : {rel:9.2e}")

    # Batch of fits.
    curves, truth = simulate(a.n_batch, 0)
    t = time.perf_counter()
    kw = dict(y0=Y0, init=INIT, t0=0.0, batch_size=a.batch_size, method=a.method)
    out = epinn.fit_parameters_batch(SIR(), DAYS, {"I": curves}, **kw)
    e_batch_cold = time.perf_counter() - t
    t = time.perf_counter()
    out = epinn.fit_parameters_batch(SIR(), DAYS, {"I": curves * 1.0001}, **kw)
    out = epinn.fit_parameters_batch(SIR(), DAYS, {"I": curves}, **kw)
    e_batch = (time.perf_counter() - t) / 2
    m = min(a.scipy_subset, a.n_batch)
    t = time.perf_counter()
    s_batch = np.stack([scipy_fit(c) for c in curves[:m]])
    s_time = (time.perf_counter() - t) * a.n_batch / m
    e_opt = np.stack([out["beta"], out["gamma"]], 1)[:m]
    rel_b = np.max(np.abs(e_opt / s_batch - 1.0))
    print(f"\n{a.n_batch} fits to simulated noisy curves")
    print(f"  scipy loop (timed on {m}, extrapolated): {s_time:9.2f} s")
    print(f"  epinn batch cold (compile included)   : {e_batch_cold:9.2f} s")
    print(f"  epinn batch warm                      : {e_batch:9.2f} s")
    print(f"  speed-up vs scipy loop (warm)         : {s_time / e_batch:9.1f}x   (target >= 50x)")
    print(f"  converged                             : {int(out['converged'].sum())}/{a.n_batch}")
    print(f"  max relative difference of optima     : {rel_b:9.2e}   (target <= 1e-4)")
    if a.json:
        result = {
            "machine": platform.machine(), "jax": jax.__version__, "devices":
            jax.device_count(), "single": {"scipy_ms": sc * 1e3, "epinn_cold_ms": cold * 1e3,
                                            "epinn_warm_ms": warm * 1e3, "speedup": sc / warm,
                                            "max_rel_diff": float(rel)},
            "batch": {"n": a.n_batch, "batch_size": a.batch_size, "method": a.method,
                      "scipy_s": s_time,
                      "scipy_timed_on": m, "epinn_cold_s": e_batch_cold, "epinn_warm_s": e_batch,
                      "speedup": s_time / e_batch, "converged": int(out["converged"].sum()),
                      "max_rel_diff": float(rel_b)},
            "targets_met": {"warm>=5x": bool(sc / warm >= 5), "cold<3s": bool(cold < 3),
                            "batch>=50x": bool(s_time / e_batch >= 50),
                            "optima<=1e-4": bool(rel_b <= 1e-4)},
        }
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
