"""Tests for epinn.compartmental against independent references.

References: scipy.integrate.solve_ivp on right-hand sides written out again here in numpy,
closed-form SIR/SEIR facts, conservation laws and central finite differences.
"""

import math

import diffrax
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import lambertw

from epinn.compartmental import (
    ensemble_summary,
    R0,
    SEIR,
    SEIRD,
    SIR,
    SIRD,
    SIRS,
    NetworkRate,
    SIRVitalDynamics,
    Trajectory,
    cumulative_cases,
    doubling_time,
    effective_reproduction_number,
    final_size,
    growth_rate,
    incidence,
    peak,
    solve,
    solve_ensemble,
)
from tests.helpers import central_difference

N = 1000.0
TS = np.linspace(0.0, 100.0, 51)

# Parameters and initial states per model, used across the tests.
CASES = {
    "SIR": (SIR(), {"beta": 0.5, "gamma": 0.2}, {"S": 990.0, "I": 10.0, "R": 0.0}),
    "SIRD": (
        SIRD(),
        {"beta": 0.5, "gamma": 0.15, "mu": 0.05},
        {"S": 990.0, "I": 10.0, "R": 0.0, "D": 0.0},
    ),
    "SIRS": (
        SIRS(),
        {"beta": 0.5, "gamma": 0.2, "omega": 0.02},
        {"S": 990.0, "I": 10.0, "R": 0.0},
    ),
    "SEIR": (
        SEIR(),
        {"beta": 0.6, "sigma": 0.3, "gamma": 0.2},
        {"S": 985.0, "E": 5.0, "I": 10.0, "R": 0.0},
    ),
    "SEIRD": (
        SEIRD(),
        {"beta": 0.6, "sigma": 0.3, "gamma": 0.15, "mu": 0.05},
        {"S": 985.0, "E": 5.0, "I": 10.0, "R": 0.0, "D": 0.0},
    ),
    "SIRVitalDynamics": (
        SIRVitalDynamics(),
        {"beta": 0.5, "gamma": 0.2, "mu": 0.01},
        {"S": 990.0, "I": 10.0, "R": 0.0},
    ),
}


def _numpy_rhs(name, p, beta_of_t=None):
    """Right-hand sides written independently of epinn; last state = cumulative infections."""

    def rhs(t, y):
        b = p["beta"] if beta_of_t is None else beta_of_t(t)
        n = p["N"]
        if name in ("SIR", "SIRD", "SIRS", "SIRVitalDynamics"):
            S, I, *rest = y[:-1]
            new = b * S * I / n
            if name == "SIR":
                d = [-new, new - p["gamma"] * I, p["gamma"] * I]
            elif name == "SIRD":
                d = [-new, new - (p["gamma"] + p["mu"]) * I, p["gamma"] * I, p["mu"] * I]
            elif name == "SIRS":
                R = rest[0]
                d = [-new + p["omega"] * R, new - p["gamma"] * I, p["gamma"] * I - p["omega"] * R]
            else:
                R, mu = rest[0], p["mu"]
                d = [mu * n - new - mu * S, new - (p["gamma"] + mu) * I, p["gamma"] * I - mu * R]
        else:
            S, E, I = y[0], y[1], y[2]
            new = b * S * I / n
            mu = p.get("mu", 0.0)
            d = [-new, new - p["sigma"] * E, p["sigma"] * E - (p["gamma"] + mu) * I, p["gamma"] * I]
            if name == "SEIRD":
                d.append(mu * I)
        return np.array([*d, new])

    return rhs


def _scipy(name, p, y0, ts, beta_of_t=None):
    """Reference: DOP853 at rtol 1e-12 (far tighter than the 1e-6 comparisons)."""
    model = CASES[name][0]
    y = np.array([y0[c] for c in model.compartments] + [0.0])
    sol = solve_ivp(
        _numpy_rhs(name, p, beta_of_t),
        (ts[0], ts[-1]),
        y,
        t_eval=ts,
        method="DOP853",
        rtol=1e-12,
        atol=1e-12 * p["N"],
    )
    assert sol.success
    return sol.y[:-1].T, sol.y[-1]


# --------------------------------------------------------------------------------------
# Against scipy, conservation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_matches_scipy(name, x64):
    model, rates, y0 = CASES[name]
    p = {**rates, "N": N}
    traj = solve(model, p, y0, TS, **TOL)
    ref, ref_cum = _scipy(name, p, y0, TS)
    assert traj.ys.dtype == jnp.float64 and bool(traj.success)
    # <= 1e-6 relative; the atol (1e-9 N) only matters for entries near zero.
    np.testing.assert_allclose(traj.ys, ref, rtol=1e-6, atol=1e-9 * N)
    np.testing.assert_allclose(cumulative_cases(traj), ref_cum, rtol=1e-6, atol=1e-9 * N)
    np.testing.assert_allclose(incidence(traj), np.diff(ref_cum), rtol=1e-6, atol=1e-9 * N)
    for i, c in enumerate(model.compartments):
        np.testing.assert_array_equal(traj[c], traj.ys[:, i])
    # Conservation: Runge-Kutta methods conserve linear invariants up to roundoff.
    np.testing.assert_allclose(traj.ys.sum(-1), N, rtol=1e-12)
    # The model's NamedTuple is accepted wherever a mapping is.
    again = solve(model, model.Params(**p), y0, TS, **TOL)
    np.testing.assert_array_equal(again.ys, traj.ys)


def test_default_solver_is_diffrax_tsit5(x64):
    # epinn's straight-line Tsit5 takes the same steps as diffrax.Tsit5 (roundoff apart).
    model, rates, y0 = CASES["SIRS"]
    p = {**rates, "N": N}
    ours = solve(model, p, y0, TS, **TOL)
    theirs = solve(model, p, y0, TS, **TOL, solver=diffrax.Tsit5())
    assert int(ours.num_steps) == int(theirs.num_steps)
    np.testing.assert_allclose(ours.ys, theirs.ys, rtol=1e-12, atol=1e-12 * N)


def test_vector_field_convention(x64):
    model, rates, y0 = CASES["SEIR"]
    p = {**rates, "N": N}
    y = jnp.array([y0[c] for c in model.compartments])
    got = model.vector_field(0.0, y, p)
    want = _numpy_rhs("SEIR", p)(0.0, np.append(np.asarray(y), 0.0))
    np.testing.assert_allclose(got, want[:-1], rtol=1e-12)
    np.testing.assert_allclose(model.infection_flow(0.0, y, p), want[-1], rtol=1e-12)


# --------------------------------------------------------------------------------------
# SIR / SEIR exact facts
# --------------------------------------------------------------------------------------


SIR_P = {"beta": 0.5, "gamma": 0.2, "N": N}
SIR_Y0 = {"S": 990.0, "I": 10.0, "R": 0.0}
# One tolerance and a few grid sizes throughout, so compiled solves are reused across tests.
TOL = {"rtol": 1e-10, "atol": 1e-12}


def test_sir_peak(x64):
    ts = np.linspace(0.0, 100.0, 401)  # h = 0.25
    traj = solve(SIR(), SIR_P, SIR_Y0, ts, **TOL)
    r0, s0, i0 = 2.5, 990.0, 10.0
    i_max = s0 + i0 - (N / r0) * (1 + math.log(r0 * s0 / N))
    t_peak, size = peak(traj)
    # The parabolic refinement of the value is O(h^3): within 1e-6 of I_max here.
    np.testing.assert_allclose(size, i_max, rtol=1e-6)
    # S crosses N / R0 between the neighbours of the grid maximum ...
    k = int(jnp.argmax(traj["I"]))
    assert traj["S"][k - 1] > N / r0 > traj["S"][k + 1]
    # ... and at the refined peak time S = N / R0. The vertex location is only O(h^2)
    # (~1e-3 days here) and |dS/dt| ~ 50 / day there, hence 5e-4 relative.
    ref = solve_ivp(
        _numpy_rhs("SIR", SIR_P), (0.0, float(t_peak)), [990.0, 10.0, 0.0, 0.0],
        method="DOP853", rtol=1e-12, atol=1e-9,
    )
    np.testing.assert_allclose(ref.y[0, -1], N / r0, rtol=5e-4)


def test_sir_invariant_and_final_size(x64):
    ts = np.linspace(0.0, 400.0, 401)
    traj = solve(SIR(), SIR_P, SIR_Y0, ts, **TOL)
    S, I = traj["S"], traj["I"]
    r0 = 2.5
    invariant = S + I - (N / r0) * jnp.log(S)
    np.testing.assert_allclose(invariant, invariant[0], rtol=1e-9)
    fs = final_size(SIR(), SIR_P, SIR_Y0)
    s_inf = float(fs.susceptible)
    # It satisfies the final-size equation ...
    lhs = math.log(990.0 / s_inf)
    rhs = (r0 / N) * (N - s_inf - 0.0)
    assert abs(lhs - rhs) < 1e-12
    # ... and matches a long simulation (I(400) ~ 1e-20, negligible).
    np.testing.assert_allclose(s_inf, S[-1], rtol=1e-8)
    np.testing.assert_allclose(fs.infections, 990.0 - s_inf, rtol=1e-12)
    np.testing.assert_allclose(fs.attack_rate, (990.0 - s_inf) / N, rtol=1e-12)


def test_sir_early_growth(x64):
    n, i0 = 1e6, 1.0
    p = {"beta": 0.5, "gamma": 0.2, "N": n}
    y0 = [n - i0, i0, 0.0]
    r = float(growth_rate(SIR(), p, y0))
    np.testing.assert_allclose(r, 0.5 * (n - i0) / n - 0.2, rtol=1e-12)
    np.testing.assert_allclose(doubling_time(SIR(), p, y0), math.log(2) / r, rtol=1e-12)
    traj = solve(SIR(), p, y0, np.linspace(0.0, 10.0, 51), **TOL)
    slope = (math.log(traj["I"][-1]) - math.log(traj["I"][0])) / 10.0
    # S / N falls by ~I(10)/N ~ 2e-5 over the window, so the slope is r to ~1e-4.
    np.testing.assert_allclose(slope, r, rtol=1e-4)


@pytest.mark.parametrize("name", ["SEIR", "SEIRD"])
def test_seir_growth_rate(name, x64):
    model, rates, _ = CASES[name]
    n = 1e6
    p = {**rates, "N": n}
    y0 = {c: 0.0 for c in model.compartments} | {"S": n - 1.0, "I": 1.0}
    r = float(growth_rate(model, p, y0))
    gamma_eff = rates["gamma"] + rates.get("mu", 0.0)
    s = rates["sigma"]
    # (r + sigma)(r + gamma) = sigma beta S0 / N
    np.testing.assert_allclose((r + s) * (r + gamma_eff), s * rates["beta"] * (n - 1) / n)
    assert r > 0
    traj = solve(model, p, y0, np.linspace(0.0, 50.0, 51), **TOL)
    # After the transient (the second eigenvalue is ~0.85 below r: e^-13 by t = 15) I
    # grows at rate r; S / N falls by ~2e-4 by t = 30, hence 1e-3 relative.
    slope = (math.log(traj["I"][30]) - math.log(traj["I"][15])) / 15.0
    np.testing.assert_allclose(slope, r, rtol=1e-3)


def test_growth_rate_per_model(x64):
    s0 = 900.0
    for name, (model, rates, y0) in CASES.items():
        y = {**y0, "S": s0}
        r = float(growth_rate(model, {**rates, "N": N}, y))
        b, g, mu = rates["beta"], rates["gamma"], rates.get("mu", 0.0)
        if "E" in model.compartments:
            sg = rates["sigma"]
            tr, det = -(sg + g + mu), sg * (g + mu) - sg * b * s0 / N
            want = 0.5 * (tr + math.sqrt(tr**2 - 4 * det))
        else:
            want = b * s0 / N - g - mu
        np.testing.assert_allclose(r, want, rtol=1e-12, err_msg=name)


def test_r0_and_effective_reproduction_number(x64):
    want = {
        "SIR": 0.5 / 0.2,
        "SIRD": 0.5 / 0.2,
        "SIRS": 0.5 / 0.2,
        "SEIR": 0.6 / 0.2,
        "SEIRD": 0.6 / 0.2,
        "SIRVitalDynamics": 0.5 / 0.21,
    }
    for name, (model, rates, y0) in CASES.items():
        p = {**rates, "N": N}
        np.testing.assert_allclose(R0(model, p), want[name], rtol=1e-12, err_msg=name)
        traj = solve(model, p, y0, TS, **TOL)
        np.testing.assert_allclose(
            effective_reproduction_number(model, p, traj), want[name] * traj["S"] / N, rtol=1e-12
        )


@pytest.mark.parametrize("name", ["SIR", "SIRD", "SEIR", "SEIRD"])
def test_final_size_matches_long_simulation(name, x64):
    model, rates, y0 = CASES[name]
    p = {**rates, "N": N}
    traj = solve(model, p, y0, np.linspace(0.0, 600.0, 51), **TOL)
    fs = final_size(model, p, y0)
    np.testing.assert_allclose(fs.susceptible, traj["S"][-1], rtol=1e-7)
    np.testing.assert_allclose(fs.infections, cumulative_cases(traj)[-1], rtol=1e-7)


def test_final_size_ensemble_and_gradient(x64):
    betas = np.array([0.1, 0.25, 0.5, 1.0])  # R0 below and above 1
    p = {"beta": betas, "gamma": 0.2, "N": N}
    fs = final_size(SIR(), p, SIR_Y0)
    # Closed form: S_inf = -(N/R0) W0(-(R0 S0/N) exp(-R0 (S0 + I0)/N)) (scipy's Lambert W).
    r0 = betas / 0.2
    arg = -(r0 * 990.0 / N) * np.exp(-r0 * 1000.0 / N)
    want = -(N / r0) * np.real(lambertw(arg, 0))
    np.testing.assert_allclose(fs.susceptible, want, rtol=1e-10)

    def f(x):
        return final_size(SIR(), {"beta": x[0], "gamma": x[1], "N": N}, SIR_Y0).susceptible

    x = np.array([0.5, 0.2])
    np.testing.assert_allclose(jax.grad(f)(jnp.asarray(x)), central_difference(f, x), rtol=1e-6)


def test_peak_refinement_and_boundary():
    ts = jnp.linspace(0.0, 10.0, 41)
    true_t = 3.3
    y = jnp.exp(-((ts - true_t) ** 2))[:, None]
    traj = Trajectory(
        ts=ts,
        ys=y,
        cumulative_infections=jnp.zeros_like(ts),
        success=jnp.array(True),
        num_steps=jnp.array(0),
        compartments=("I",),
    )
    t, size = peak(traj)
    assert abs(float(t) - true_t) < 2e-3 and abs(float(size) - 1.0) < 1e-3  # O(h^3)
    decreasing = traj.__class__(
        ts=ts,
        ys=-ts[:, None],
        cumulative_infections=jnp.zeros_like(ts),
        success=jnp.array(True),
        num_steps=jnp.array(0),
        compartments=("I",),
    )
    t, size = peak(decreasing)
    assert float(t) == 0.0 and float(size) == 0.0


# --------------------------------------------------------------------------------------
# Differentiation, transformations, ensembles
# --------------------------------------------------------------------------------------

# A sum of y0 below N lets finite differences perturb y0 upwards without tripping the
# sum(y0) <= N check.
GRAD_Y0 = {  # each sums to N = 1000 (y0 holds the whole population)
    "SIR": [980.0, 10.0, 10.0],
    "SIRD": [980.0, 10.0, 5.0, 5.0],
    "SIRS": [980.0, 10.0, 10.0],
    "SEIR": [980.0, 5.0, 10.0, 5.0],
    "SEIRD": [975.0, 5.0, 10.0, 5.0, 5.0],
    "SIRVitalDynamics": [980.0, 10.0, 10.0],
}
# SEIRD covers beta, sigma, gamma, mu, N and y0 (and forward mode); SIRS adds omega and the
# integrated infection state, SIRVitalDynamics births. Reverse-mode compiles cost ~6 s each,
# so only SEIRD runs by default (the rest with -m slow).
_SLOW = pytest.mark.slow
GRAD_CASES = ["SEIRD"] + [pytest.param(n, marks=_SLOW) for n in CASES if n != "SEIRD"]


@pytest.mark.parametrize("name", GRAD_CASES)
def test_gradients_match_finite_differences(name, x64):
    model, rates, _ = CASES[name]
    names = (*model.rate_names, "N")
    w = np.linspace(0.5, 1.5, TS.size)  # fixed weights on time and compartment
    wc = np.arange(1.0, len(model.compartments) + 1.0)

    def loss(x, adjoint=None):
        k = len(names)
        p = dict(zip(names, x[:k]))
        traj = solve(model, p, x[k:], TS, **TOL, adjoint=adjoint)
        return jnp.sum(traj.ys * w[:, None] * wc) + jnp.sum(incidence(traj))

    x = np.array([*rates.values(), N, *GRAD_Y0[name]])
    g = jax.grad(loss)(jnp.asarray(x))
    # Central differences with a relative step of 1e-4 in every coordinate: truncation
    # ~1e-8 relative; the solver noise (~rtol 1e-10 of the loss) over the step is ~1e-6.
    fd = central_difference(lambda z: float(loss(jnp.asarray(x * z))), np.ones_like(x), 1e-4)
    np.testing.assert_allclose(g, fd / x, rtol=1e-5, atol=1e-6 * np.abs(fd / x).max())
    if name == "SEIRD":  # forward mode (jax.jacfwd needs diffrax.ForwardMode()) agrees too
        fwd = jax.jacfwd(lambda v: loss(v, diffrax.ForwardMode()))(jnp.asarray(x))
        np.testing.assert_allclose(fwd, g, rtol=1e-9)


# SIRS (integrated infection state) and SEIRD (derived compartment) by default.
SENS_CASES = [n if n in ("SIRS", "SEIRD") else pytest.param(n, marks=_SLOW) for n in CASES]


@pytest.mark.parametrize("name", SENS_CASES)
def test_forward_sensitivities_match_jacfwd_and_finite_differences(name, x64):
    """`_integrate_sensitivities` (the fits' Jacobians) against two independent routes.

    The sensitivities ride on the state's steps, so they agree with forward-mode autodiff
    through diffrax (the derivative of the discrete solver) to the solver tolerance, and
    with central differences of the solution to ~1e-6.
    """
    from epinn.compartmental._integrate import _integrate, _integrate_sensitivities, _make_config

    model, rates, y0 = CASES[name]
    names = list(rates)
    x0 = jnp.asarray(GRAD_Y0[name]) / N

    def inputs(th):  # parameters: log rates, then log x0 of every compartment
        r = {k: jnp.exp(th[i]) for i, k in enumerate(names)}
        return r, jnp.exp(th[len(names):])

    th = jnp.log(jnp.asarray([*rates.values(), *np.asarray(x0)]))
    cfg = _make_config((None, 1e-10, 1e-12, None, 16384, diffrax.ForwardMode(), False))

    def solution(t):
        xs, cum, _, _ = _integrate(model, *inputs(t), jnp.asarray(TS), cfg)
        return xs, cum

    r, x = inputs(th)
    d_r, d_x = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), jax.jacfwd(inputs)(th))
    (xs, cum, ok, _), (d_xs, d_cum) = _integrate_sensitivities(
        model, r, x, jnp.asarray(TS), cfg, d_r, d_x
    )
    assert bool(ok)
    ref_xs, ref_cum = solution(th)
    # The same ODE in normalised time: equal to the solver tolerance (rtol 1e-10).
    np.testing.assert_allclose(xs, ref_xs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cum, ref_cum, rtol=1e-9, atol=1e-12)
    jx, jc = jax.jacfwd(solution)(th)  # (T, C, P), (T, P)
    scale = np.abs(jx).max()
    np.testing.assert_allclose(np.moveaxis(d_xs, 0, -1), jx, atol=1e-7 * scale)
    np.testing.assert_allclose(np.moveaxis(d_cum, 0, -1), jc, atol=1e-7 * scale)
    # Central differences in the first rate (relative step 1e-5: truncation ~1e-10).
    h = 1e-5
    e = jnp.zeros_like(th).at[0].set(h)
    fd = (solution(th + e)[0] - solution(th - e)[0]) / (2 * h)
    np.testing.assert_allclose(d_xs[0], fd, atol=1e-6 * scale)


def test_vmap_equals_loop_and_jit_equals_eager():
    betas = jnp.array([0.3, 0.5, 0.9])
    y0 = jnp.array([0.99, 0.01, 0.0])

    def run(b):
        p = {"beta": b, "gamma": 0.2, "mu": 0.01, "N": 1.0}
        return solve(SIRVitalDynamics(), p, y0, TS).ys

    vm = jax.vmap(run)(betas)
    assert vm.dtype == jnp.float32
    for i, b in enumerate(betas):
        # float32: lanes of a vmapped solve take different step sequences than lone solves.
        np.testing.assert_allclose(vm[i], run(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jit(run)(betas[1]), run(betas[1]), rtol=1e-6, atol=1e-7)
    # Births = deaths keep the total at N (float32 roundoff).
    np.testing.assert_allclose(vm.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("method", "sort"), [("stacked", True), ("stacked", False),
                                              ("vmap", True)])
def test_ensemble_equals_looped_solve(method, sort, x64):
    model, rates, y0 = CASES["SIRS"]
    M = 7
    betas = np.linspace(0.2, 1.2, M)[::-1]
    ns = np.linspace(500.0, 2000.0, M)
    y0s = np.stack([ns - 10.0, np.full(M, 10.0), np.zeros(M)], axis=1)
    p = {**rates, "beta": betas, "N": ns}
    # chunk_size 3 -> 3 chunks of 3 with 2 padded members; members sorted by growth rate
    # (then put back in order by a gather) or left in order (then the padding is cut off).
    traj = solve_ensemble(
        model, p, y0s, TS, method=method, chunk_size=3, sort_members=sort, **TOL
    )
    assert traj.ys.shape == (M, TS.size, 3) and traj.success.shape == (M,)
    assert bool(traj.success.all())
    for m in range(M):
        one = solve(model, {**p, "beta": betas[m], "N": ns[m]}, y0s[m], TS, **TOL)
        # Different step sequences; both are within ~1e-9 of the exact solution.
        np.testing.assert_allclose(traj.ys[m], one.ys, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(
            traj.cumulative_infections[m], one.cumulative_infections, rtol=1e-7, atol=1e-7
        )
    rt = effective_reproduction_number(model, p, traj)
    np.testing.assert_allclose(rt, (betas / 0.2)[:, None] * traj["S"] / ns[:, None])
    t_peak, size = peak(traj)
    assert t_peak.shape == (M,)
    for m in range(M):
        member = Trajectory(traj.ts, traj.ys[m], traj.cumulative_infections[m],
                            traj.success[m], traj.num_steps[m], traj.compartments)
        np.testing.assert_allclose([t_peak[m], size[m]], peak(member), rtol=1e-12)


@pytest.mark.parametrize("name", ["SIR", "SEIRD", "SIRS"])
@pytest.mark.parametrize("method", ["stacked", "vmap"])
def test_ensemble_cumulative_infections_derived_or_stored(name, method, x64):
    """Where S falls by infection only, an ensemble stores no cumulative infections: they
    are S(t0) - S(t) from ``ys`` and equal a lone solve's integrated or derived ones."""
    model, rates, y0 = CASES[name]
    betas = np.array([0.9, 0.4, 0.6])
    p = {**rates, "beta": betas, "N": N}
    traj = solve_ensemble(model, p, y0, TS, method=method, chunk_size=2, **TOL)
    assert (traj._cumulative is None) == model._infections_from_S
    assert traj.cumulative_infections.shape == (3, TS.size)
    for m in range(3):
        one = solve(model, {**p, "beta": betas[m]}, y0, TS, **TOL)
        np.testing.assert_allclose(
            traj.cumulative_infections[m], one.cumulative_infections, rtol=1e-7, atol=1e-7
        )
    summary = ensemble_summary(model, p, y0, TS, method=method, chunk_size=2, **TOL)
    np.testing.assert_allclose(summary.cumulative_infections,
                               traj.cumulative_infections[:, -1], rtol=1e-12)
    # Under jit the derived values are the same.
    got = jax.jit(lambda t: t.cumulative_infections)(traj)
    np.testing.assert_array_equal(got, traj.cumulative_infections)


def test_trajectory_without_cumulative_infections_needs_S():
    ts = jnp.arange(3.0)
    with pytest.raises(ValueError, match="needs an 'S' compartment"):
        Trajectory(ts, jnp.ones((3, 2)), None, jnp.bool_(True), jnp.int32(1), ("I", "R"))


def test_ensemble_summary_matches_full_trajectories(x64):
    """Chunk-wise statistics equal numpy's over the full ensemble (exact merge formula)."""
    model, rates, y0 = CASES["SIRS"]
    M = 11
    betas = np.linspace(0.2, 1.2, M)[::-1]
    p = {**rates, "beta": betas, "N": N}
    # chunk_size 4 -> 3 chunks of 4 with 1 padded member, which must not be counted.
    kw = dict(chunk_size=4, **TOL)
    traj = solve_ensemble(model, p, y0, TS, **kw)
    out = ensemble_summary(model, p, y0, TS, **kw)
    ys = np.asarray(traj.ys)
    assert int(out.count) == M and out.mean.shape == (TS.size, 3)
    # Same solves, so equal to float64 roundoff of the sums.
    np.testing.assert_allclose(out.mean, ys.mean(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out.std, ys.std(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(out.min, ys.min(0))
    np.testing.assert_array_equal(out.max, ys.max(0))
    np.testing.assert_allclose(np.stack(peak(traj)), np.stack([out.peak_time, out.peak_size]),
                               rtol=1e-12)
    np.testing.assert_array_equal(out.cumulative_infections,
                                  traj.cumulative_infections[:, -1])
    mean_i, std_i = out["I"]
    np.testing.assert_array_equal(mean_i, out.mean[:, 1])
    with pytest.raises(KeyError, match="Unknown compartment"):
        out["X"]
    with pytest.raises(ValueError, match="chunk_size"):
        ensemble_summary(model, p, y0, TS, chunk_size=0)



def test_ensemble_summary_of_a_stratified_model(x64):
    """Per-group statistics: ``(T, C, G)`` moments equal numpy's over the full trajectories,
    peaks and final sizes are those of the whole population (summed over groups)."""
    from epinn.compartmental import SEIR, stratify

    model = stratify(SEIR(), ("young", "old"))
    M = 5
    p = {"beta": np.stack([np.linspace(0.3, 0.6, M), np.linspace(0.2, 0.4, M)], 1),
         "sigma": 0.2, "gamma": 0.1, "C": np.array([[2.0, 0.5], [0.5, 1.0]]),
         "N": np.array([600.0, 400.0])}
    y0 = {"S": np.array([590.0, 400.0]), "E": np.zeros(2), "I": np.array([10.0, 0.0]),
          "R": np.zeros(2)}
    kw = dict(chunk_size=2, **TOL)  # 3 chunks, one padded member
    traj = solve_ensemble(model, p, y0, TS, **kw)
    out = ensemble_summary(model, p, y0, TS, **kw)
    ys = np.asarray(traj.ys)  # (M, T, C, G)
    assert out.mean.shape == (TS.size, 4, 2) and out.groups == ("young", "old")
    np.testing.assert_allclose(out.mean, ys.mean(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out.std, ys.std(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(out.max, ys.max(0))
    mean_i, _ = out["I"]
    np.testing.assert_allclose(mean_i, ys[:, :, 2].mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.stack(peak(traj)), np.stack([out.peak_time, out.peak_size]),
                               rtol=1e-12)
    np.testing.assert_allclose(out.cumulative_infections, traj.cumulative_infections[:, -1],
                               rtol=1e-12)

def test_chunk_widths_avoid_multiples_of_16():
    from epinn.compartmental.ensemble import _chunk_layout

    for members, chunk_size in [(10_000, 1024), (8192, 1024), (960, 1024), (7, 3), (1, 1024),
                                (4096, 16384), (100, 64)]:
        n, width = _chunk_layout(members, chunk_size)
        assert n * width >= members and (n - 1) * width < members
        assert width <= chunk_size + 8
        assert width < 256 or width % 16
    assert _chunk_layout(8192, 1024) == (8, 1032)  # widened by 8
    assert _chunk_layout(10_000, 1024) == (10, 1000)  # kept


def test_ensemble_with_a_widened_chunk():
    """256 members in one chunk of 264: 8 padding copies that are dropped and not counted."""
    M = 256
    betas = jnp.linspace(0.3, 1.0, M)
    p = {"beta": betas, "gamma": 0.2, "N": 1.0}
    y0 = jnp.array([0.999, 0.001, 0.0])
    ts = jnp.linspace(0.0, 60.0, 31)
    traj = solve_ensemble(SIR(), p, y0, ts, chunk_size=256)
    assert traj.ys.shape == (M, 31, 3) and bool(traj.success.all())
    out = ensemble_summary(SIR(), p, y0, ts, chunk_size=256)
    assert int(out.count) == M
    # The summary's mean is over the 256 members only (float32 sums).
    np.testing.assert_allclose(out.mean, traj.ys.mean(0), rtol=1e-5, atol=1e-6)
    for m in (0, 77, M - 1):  # each member as a lone solve: 3e-7 apart (float32, rtol 1e-6)
        one = solve(SIR(), {**p, "beta": betas[m]}, y0, ts)
        np.testing.assert_allclose(traj.ys[m], one.ys, rtol=0, atol=2e-6)


def test_ensemble_broadcasting():
    # Only y0 carries the ensemble axis (as a mapping of arrays).
    i0 = jnp.array([1.0, 5.0, 20.0])
    y0 = {"S": N - i0, "I": i0, "R": jnp.zeros(3)}
    traj = solve_ensemble(SIR(), SIR_P, y0, TS)
    assert traj.ys.shape == (3, TS.size, 3) and traj.cumulative_infections.shape == (3, TS.size)
    np.testing.assert_allclose(traj["I"][:, 0], i0)
    assert np.all(np.diff(np.asarray(traj["I"][:, 3])) > 0)  # more seeds, more infected early


def test_ensemble_broadcasts_unbatched_inputs_inside_the_program():
    # Nothing batched: one member, the lone solve. Only N batched: two members with the
    # same y0 in counts (so different fractions of N) and shared rates.
    y0 = jnp.array([N - 1.0, 1.0, 0.0])
    one = solve_ensemble(SIR(), SIR_P, y0, TS)
    ref = solve(SIR(), SIR_P, y0, TS)
    assert one.ys.shape == (1, TS.size, 3)
    np.testing.assert_allclose(one.ys[0], ref.ys, rtol=1e-4, atol=1e-3 * N)
    # Only N batched, with y0 in fractions of each member's own N: y0 = [1 - 1/N, 1/N, 0]
    # cannot be shared, so both are batched; a shared y0 in counts against two different
    # N is refused (it cannot hold the whole population of both).
    Ns = jnp.array([N, 2 * N])
    y0s = jnp.stack([jnp.array([n - 1.0, 1.0, 0.0]) for n in (N, 2 * N)])
    many = solve_ensemble(SIR(), {**SIR_P, "N": Ns}, y0s, TS)
    assert many.ys.shape == (2, TS.size, 3)
    np.testing.assert_allclose(many.ys[:, 0], y0s)
    np.testing.assert_allclose(many.ys.sum(-1), jnp.broadcast_to(Ns[:, None], (2, TS.size)),
                               rtol=1e-5)  # conserved
    lone = solve(SIR(), {**SIR_P, "N": 2 * N}, y0s[1], TS)
    np.testing.assert_allclose(many.ys[1], lone.ys, rtol=1e-4, atol=1e-3 * N)
    with pytest.raises(ValueError, match="less than the population"):
        solve_ensemble(SIR(), {**SIR_P, "N": Ns}, y0, TS)
    # only N batched, in fractions: N = 1 for every member of a batched beta
    frac = solve_ensemble(SIR(), {**SIR_P, "beta": jnp.array([0.4, 0.6]), "N": 1.0},
                          y0 / N, TS)
    np.testing.assert_allclose(frac.ys.sum(-1), 1.0, rtol=1e-5)


def test_ensemble_compiled_once_per_static_setting():
    """Concrete inputs of the own loop run through one cached ``jax.jit`` per static
    setting: new values reuse it, and its results (inputs sent as they are, or packed
    into one buffer as on several devices) equal equinox's ``filter_jit`` bit for bit."""
    from epinn.compartmental.ensemble import _ARRAY, _call_ensemble, _compiled, _prepare_ensemble

    p = {**SIR_P, "beta": jnp.array([0.3, 0.5, 0.7])}
    solve_ensemble(SIR(), p, SIR_Y0, TS, chunk_size=2)
    before = _compiled.cache_info()
    p = {**SIR_P, "beta": jnp.array([0.4, 0.6, 0.8])}
    solve_ensemble(SIR(), p, SIR_Y0, TS, chunk_size=2)
    after = _compiled.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)

    config = (None, 1e-6, 1e-8, None, 16384, None, True)
    ensemble, args, mesh = _prepare_ensemble(SIR(), p, SIR_Y0, TS, "stacked", 2, True,
                                             config, None, False)
    ref = ensemble(*args, mesh)  # equinox's filter_jit
    jax.tree_util.tree_map(np.testing.assert_array_equal, _call_ensemble(ensemble, args, mesh),
                           ref)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    arrays = [v for v in leaves if isinstance(v, (np.ndarray, jax.Array))]
    static = tuple(_ARRAY if isinstance(v, (np.ndarray, jax.Array)) else v for v in leaves)
    layout = tuple((v.shape, v.dtype) for v in arrays)
    packed = _compiled(ensemble, treedef, static, layout, None, True)
    flat = np.concatenate([np.ravel(np.asarray(v)) for v in arrays])
    jax.tree_util.tree_map(np.testing.assert_array_equal, packed(flat), ref)


@pytest.mark.slow
def test_ensemble_gradient(x64):
    def loss(beta):
        p = {"beta": beta, "gamma": 0.2, "N": N}
        return solve_ensemble(SIR(), p, SIR_Y0, TS, chunk_size=2, **TOL)["I"].sum()

    x = np.array([0.3, 0.5, 0.7])
    g = jax.grad(loss)(jnp.asarray(x))
    fd = central_difference(lambda v: float(loss(jnp.asarray(v))), x, eps=1e-5)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


# --------------------------------------------------------------------------------------
# Time-varying rates
# --------------------------------------------------------------------------------------


def _beta_np(t):
    return 0.5 * (1.0 + 0.5 * np.sin(2 * np.pi * t / 30.0))


def _beta_jnp(t):  # one function object, so compiled solves are shared between tests
    return 0.5 * (1.0 + 0.5 * jnp.sin(2 * jnp.pi * t / 30.0))


def test_time_varying_function_and_interpolation(x64):
    p_np = {"beta": None, "gamma": 0.2, "N": N}
    ref, _ = _scipy("SIR", p_np, SIR_Y0, TS, beta_of_t=_beta_np)
    traj = solve(SIR(), {**p_np, "beta": _beta_jnp}, SIR_Y0, TS, **TOL)
    np.testing.assert_allclose(traj.ys, ref, rtol=1e-6, atol=1e-9 * N)

    knots = np.linspace(0.0, 100.0, 11)
    values = 0.3 + 0.04 * knots * np.exp(-knots / 40.0)
    interp = diffrax.LinearInterpolation(ts=jnp.asarray(knots), ys=jnp.asarray(values))
    ref, _ = _scipy("SIR", p_np, SIR_Y0, TS, beta_of_t=lambda t: np.interp(t, knots, values))
    traj = solve(SIR(), {**p_np, "beta": interp}, SIR_Y0, TS, **TOL)
    np.testing.assert_allclose(traj.ys, ref, rtol=1e-6, atol=1e-9 * N)
    np.testing.assert_allclose(
        R0(SIR(), {**p_np, "beta": interp}, t=knots), values / 0.2, rtol=1e-12
    )


def test_time_varying_ensemble_shares_the_rate(x64):
    fn = _beta_jnp
    gammas = np.array([0.1, 0.2, 0.3])
    p = {"beta": fn, "gamma": gammas, "N": N}
    traj = solve_ensemble(SIR(), p, SIR_Y0, TS, chunk_size=2, **TOL)
    for m, g in enumerate(gammas):
        one = solve(SIR(), {**p, "gamma": g}, SIR_Y0, TS, **TOL)
        np.testing.assert_allclose(traj.ys[m], one.ys, rtol=1e-7, atol=1e-7)
    rt = effective_reproduction_number(SIR(), p, traj)
    want = fn(jnp.asarray(TS))[None, :] / gammas[:, None] * traj["S"] / N
    np.testing.assert_allclose(rt, want, rtol=1e-12)


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))


def test_network_rate_solution_and_gradient(x64):
    net = _MLP()
    params = net.init(jr.PRNGKey(0), jnp.ones((1,)))
    rate = NetworkRate(net, params, t_scale=100.0)
    w = jax.tree_util.tree_map(np.asarray, params["params"])

    def beta_np(t):  # the same network in numpy (Dense_1 is the hidden layer, built second)
        h = np.tanh(t / 100.0 * w["Dense_1"]["kernel"][0] + w["Dense_1"]["bias"])
        return np.logaddexp(0.0, h @ w["Dense_0"]["kernel"][:, 0] + w["Dense_0"]["bias"][0])

    np.testing.assert_allclose(rate(3.0), beta_np(3.0), rtol=1e-6)  # float32 params
    p = {"beta": rate, "gamma": 0.2, "N": N}
    ts = TS
    ref, _ = _scipy("SIR", {**p, "beta": None}, SIR_Y0, ts, beta_of_t=beta_np)
    traj = solve(SIR(), p, SIR_Y0, ts, **TOL)
    np.testing.assert_allclose(traj.ys, ref, rtol=1e-6, atol=1e-9 * N)

    def loss(net_params):
        r = NetworkRate(net, net_params, t_scale=100.0)
        return solve(SIR(), {**p, "beta": r}, SIR_Y0, ts, **TOL)["I"].sum()

    g = jax.grad(loss)(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    direction = [jr.normal(jr.PRNGKey(i), leaf.shape) for i, leaf in enumerate(leaves)]
    directional = sum(jnp.vdot(a, d) for a, d in zip(jax.tree_util.tree_leaves(g), direction))

    def along(h):
        moved = [leaf + h * d for leaf, d in zip(leaves, direction)]
        return float(loss(jax.tree_util.tree_unflatten(treedef, moved)))

    eps = 1e-4
    fd = (along(eps) - along(-eps)) / (2 * eps)
    np.testing.assert_allclose(directional, fd, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Bad input and failure reporting
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, y0, ts, match",
    [
        ({"beta": -0.1, "gamma": 0.2, "N": N}, SIR_Y0, TS, r"params\['beta'\].*non-negative"),
        ({"beta": 0.5, "gamma": np.nan, "N": N}, SIR_Y0, TS, r"params\['gamma'\].*finite"),
        ({"beta": 0.5, "gamma": np.inf, "N": N}, SIR_Y0, TS, r"params\['gamma'\].*finite"),
        ({"beta": 0.5, "gamma": 0.2, "N": -5.0}, SIR_Y0, TS, r"params\['N'\].*positive"),
        ({"beta": 0.5, "gamma": 0.2, "N": 0.0}, SIR_Y0, TS, r"params\['N'\].*positive"),
        ({"beta": 0.5, "gamma": 0.2, "N": np.inf}, SIR_Y0, TS, r"params\['N'\].*finite"),
        ({"beta": 0.5, "N": N}, SIR_Y0, TS, r"params.*missing.*gamma"),
        ({"beta": 0.5, "gamma": 0.2}, SIR_Y0, TS, r"params.*missing.*N"),
        ({"beta": 0.5, "gamma": 0.2, "delta": 1.0, "N": N}, SIR_Y0, TS, r"params.*delta"),
        ({"beta": [0.5, 0.6], "gamma": 0.2, "N": N}, SIR_Y0, TS, r"beta.*solve_ensemble"),
        (SIR_P, {"S": 990.0, "I": 10.0, "X": 0.0}, TS, r"y0.*unknown.*X"),
        (SIR_P, {"S": 990.0, "I": 10.0}, TS, r"y0.*missing.*R"),
        (SIR_P, [990.0, 10.0], TS, r"y0.*3 entries"),
        (SIR_P, [990.0, -10.0, 0.0], TS, r"y0.*non-negative"),
        (SIR_P, [990.0, 20.0, 0.0], TS, r"y0.*sums to"),
        (SIR_P, [990.0, np.nan, 0.0], TS, r"y0.*finite"),
        (SIR_P, SIR_Y0, np.ones((3, 2)), r"ts.*1-dimensional"),
        (SIR_P, SIR_Y0, np.array([0.0, 2.0, 1.0]), r"ts.*strictly increasing"),
        (SIR_P, SIR_Y0, np.array([0.0, 1.0, 1.0]), r"ts.*strictly increasing"),
        (SIR_P, SIR_Y0, np.array([0.0]), r"ts.*at least 2"),
        (SIR_P, SIR_Y0, np.array([0.0, np.nan]), r"ts.*finite"),
    ],
)
def test_bad_input_raises_before_solving(params, y0, ts, match):
    with pytest.raises(ValueError, match=match):
        solve(SIR(), params, y0, ts)


def test_time_varying_rate_checked_over_the_time_span():
    """A function of t that is negative or not finite at a saved time, or between two of
    them, is refused on the host, for solve and solve_ensemble alike; under jit nothing
    is checked (no callbacks in the compiled program)."""
    falling = lambda t: 0.5 - 0.01 * t  # noqa: E731  negative after t = 50
    with pytest.raises(ValueError, match=r"params\['beta'\].*function of t.*t=50\.0"):
        solve(SIR(), {**SIR_P, "beta": falling}, SIR_Y0, TS)
    # A dip below zero around t = 51, between the saved times 50 and 52 (TS every 2 days).
    dip = lambda t: 0.3 - 0.6 * jnp.exp(-(((t - 51.0) / 0.3) ** 2))  # noqa: E731
    assert np.all(np.asarray(jax.vmap(dip)(jnp.asarray(TS))) > 0)
    with pytest.raises(ValueError, match=r"params\['beta'\].*t=5[01]\."):
        solve_ensemble(SIR(), {**SIR_P, "beta": dip, "gamma": jnp.array([0.1, 0.2])},
                       SIR_Y0, TS)
    knots = jnp.linspace(0.0, 100.0, 11)
    holes = diffrax.LinearInterpolation(ts=knots, ys=jnp.full(11, 0.3).at[4].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params\['beta'\].*finite"):
        solve_ensemble(SIR(), {**SIR_P, "beta": holes, "gamma": jnp.array([0.1, 0.2])},
                       SIR_Y0, TS)
    # Zero is allowed, and a positive function passes.
    solve(SIR(), {**SIR_P, "beta": lambda t: 0.0 * t}, SIR_Y0, TS)
    traced = jax.jit(lambda b: solve(SIR(), {**SIR_P, "beta": lambda t: b + 0.0 * t},
                                     SIR_Y0, TS).ys)
    assert np.all(np.isfinite(traced(0.5)))


def test_bad_options_and_names():
    with pytest.raises(TypeError, match="model"):
        solve("SIR", SIR_P, SIR_Y0, TS)
    with pytest.raises(TypeError, match="params"):
        solve(SIR(), [0.5, 0.2, N], SIR_Y0, TS)
    for kwargs, match in [
        ({"rtol": -1.0}, "rtol"),
        ({"atol": 0.0}, "atol"),
        ({"max_steps": 0}, "max_steps"),
        ({"dt0": -1.0}, "dt0"),
    ]:
        with pytest.raises(ValueError, match=match):
            solve(SIR(), SIR_P, SIR_Y0, TS, **kwargs)
    with pytest.raises(TypeError, match="solver"):
        solve(SIR(), SIR_P, SIR_Y0, TS, solver="tsit5")
    with pytest.raises(ValueError, match="method"):
        solve_ensemble(SIR(), SIR_P, SIR_Y0, TS, method="loop")
    with pytest.raises(ValueError, match="chunk_size"):
        solve_ensemble(SIR(), SIR_P, SIR_Y0, TS, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        solve_ensemble(SIR(), SIR_P, SIR_Y0, TS, chunk_size=2.5)
    with pytest.raises(ValueError, match="disagree"):
        solve_ensemble(SIR(), {**SIR_P, "beta": np.ones(3)}, np.ones((4, 3)), TS)
    with pytest.raises(ValueError, match=r"params\['N'\]"):
        solve(SIR(), {**SIR_P, "N": lambda t: N}, SIR_Y0, TS)
    traj = solve(SIR(), SIR_P, SIR_Y0, TS)
    with pytest.raises(KeyError, match=r"'S', 'I', 'R'"):
        traj["X"]
    with pytest.raises(ValueError, match="compartment"):
        peak(traj, "E")
    with pytest.raises(ValueError, match="model"):
        final_size(SIRS(), {"beta": 0.5, "gamma": 0.2, "omega": 0.1, "N": N}, SIR_Y0)
    with pytest.raises(ValueError, match="t"):
        R0(SIR(), {**SIR_P, "beta": lambda t: 0.5})
    with pytest.raises(ValueError, match="traj"):
        effective_reproduction_number(SEIR(), {"beta": 1.0, "sigma": 1, "gamma": 1, "N": N}, traj)


def test_under_jit_only_shapes_are_checked():
    def run(beta, y0):
        return solve(SIR(), {"beta": beta, "gamma": 0.2, "N": N}, y0, TS).ys

    with pytest.raises(ValueError, match="y0"):
        jax.jit(run)(0.5, jnp.ones(2))
    # A negative traced rate cannot be checked; the documented behaviour is no error.
    assert jax.jit(run)(-0.01, jnp.array([990.0, 10.0, 0.0])).shape == (TS.size, 3)


def test_failure_is_reported():
    traj = solve(SIR(), SIR_P, SIR_Y0, TS, max_steps=3, throw=False)
    assert not bool(traj.success)
    assert not np.all(np.isfinite(np.asarray(traj.ys)))
    with pytest.raises(RuntimeError, match="maximum number of solver steps"):
        solve(SIR(), SIR_P, SIR_Y0, TS, max_steps=3)


def test_ensemble_failure_is_reported():
    """The own loop returns failures; throw=True raises them on the host, and under an
    outer jit through ``eqx.error_if``."""
    p = {**SIR_P, "beta": jnp.array([0.5, 0.6])}
    ens = solve_ensemble(SIR(), p, SIR_Y0, TS, max_steps=3, throw=False)
    assert ens.success.shape == (2,) and not bool(ens.success.any())
    assert not np.all(np.isfinite(np.asarray(ens.ys)))  # unreached times are inf
    with pytest.raises(RuntimeError, match="maximum number of solver steps"):
        solve_ensemble(SIR(), p, SIR_Y0, TS, max_steps=3)
    with pytest.raises(RuntimeError, match="maximum number of solver steps"):
        jax.jit(lambda b: solve_ensemble(SIR(), {**p, "beta": b}, SIR_Y0, TS,
                                         max_steps=3).ys)(p["beta"])


@pytest.mark.parametrize("name", ["SIR", pytest.param("SIRS", marks=pytest.mark.slow)])
def test_ensemble_own_loop_matches_diffrax(name, x64):
    """The default stacked path (epinn's step loop around diffrax's Tsit5 step and PID
    controller) against ``diffrax.diffeqsolve`` on the same stacked state (chosen by
    passing an adjoint). The step sequences differ by a rejected step or so, so the
    solutions agree to the tolerance (rtol = atol / N = 1e-6); the gradients are diffrax's
    (a custom VJP through diffeqsolve), equal to roundoff. SIRS integrates the infection
    flow as an extra state; a time-varying rate rides along."""
    model, rates, y0 = CASES[name]
    rates = {**rates, "N": N, "gamma": lambda t: 0.2 + 0.02 * jnp.sin(t / 5.0)}
    betas = jnp.linspace(0.3, 1.0, 5)
    tol = dict(rtol=1e-6, atol=1e-6, chunk_size=2)
    ref_adjoint = diffrax.RecursiveCheckpointAdjoint()

    def run(beta, adjoint=None):
        return solve_ensemble(model, {**rates, "beta": beta}, y0, TS, adjoint=adjoint, **tol)

    own, ref = run(betas), run(betas, ref_adjoint)
    assert bool(own.success.all()) and bool(ref.success.all())
    np.testing.assert_allclose(own.ys, ref.ys, rtol=1e-5, atol=1e-5 * N)
    np.testing.assert_allclose(own.cumulative_infections, ref.cumulative_infections,
                               rtol=1e-5, atol=1e-5 * N)
    assert np.max(np.abs(np.asarray(own.num_steps) - np.asarray(ref.num_steps))) <= 3
    g_own = jax.grad(lambda b: run(b)["I"].sum())(betas)
    g_ref = jax.grad(lambda b: run(b, ref_adjoint)["I"].sum())(betas)
    np.testing.assert_allclose(g_own, g_ref, rtol=1e-9)


def test_ensemble_program_has_no_host_callbacks():
    """No Python callbacks in the default ensemble program: XLA's CPU client runs a
    program with host callbacks on one device at a time, which serialised the devices of
    a mesh (diffeqsolve's runtime checks added six)."""
    from epinn.compartmental.ensemble import _prepare_ensemble

    ensemble, args, mesh = _prepare_ensemble(
        SIR(), {**SIR_P, "beta": jnp.array([0.5, 0.6])}, SIR_Y0, TS, "stacked", None, True,
        (None, 1e-6, 1e-6, None, 4096, None, True), False, False,
    )
    hlo = eqx.filter_jit(lambda a: ensemble(*a, mesh)).lower(args).as_text()
    assert "callback" not in hlo
    # ... while the diffrax path (an explicit adjoint) has them: the check can see them.
    ensemble, args, mesh = _prepare_ensemble(
        SIR(), {**SIR_P, "beta": jnp.array([0.5, 0.6])}, SIR_Y0, TS, "stacked", None, True,
        (None, 1e-6, 1e-6, None, 4096, diffrax.RecursiveCheckpointAdjoint(), True), False,
        False,
    )
    assert "callback" in eqx.filter_jit(lambda a: ensemble(*a, mesh)).lower(args).as_text()


def test_default_chunk_size_follows_the_platform():
    from epinn.compartmental.ensemble import _default_chunk_size

    class _Device:
        def __init__(self, platform):
            self.platform = platform

    class _Mesh:
        def __init__(self, platform):
            self.devices = np.array([_Device(platform)] * 2)

    assert _default_chunk_size(_Mesh("cpu")) == 1024
    assert _default_chunk_size(_Mesh("gpu")) == _default_chunk_size(_Mesh("tpu")) == 16384
    expected = 1024 if jax.devices()[0].platform == "cpu" else 16384
    assert _default_chunk_size(None) == expected


def test_grouping_order_sorts_up_to_quantisation():
    from epinn.compartmental.ensemble import _grouping_order

    order_of = jax.jit(_grouping_order)
    rng = np.random.default_rng(3)
    for M in (1, 3, 10_000):
        key = rng.normal(size=M).astype(np.float32)
        order = np.asarray(order_of(jnp.asarray(key)))
        assert sorted(order.tolist()) == list(range(M))  # a permutation
        # Sorted up to one quantisation level, (max - min) / (2^(31 - b) - 1) with
        # 2^b >= M (plus float32 rounding of the scaled keys).
        level = (key.max() - key.min()) / (2 ** (31 - max(1, (M - 1).bit_length())) - 1)
        assert np.all(np.diff(key[order]) >= -2 * level - 1e-6 * np.abs(key).max())
        # Keys further apart than a level: exactly the stable argsort.
        spread = rng.permutation(M).astype(np.float32)
        np.testing.assert_array_equal(order_of(jnp.asarray(spread)), np.argsort(spread))
    # Equal keys keep index order (also at the top level, which float32 rounds up).
    np.testing.assert_array_equal(order_of(jnp.array([2.0, 1.0, 2.0, 1.0])), [1, 3, 0, 2])
    np.testing.assert_array_equal(order_of(jnp.ones(4)), np.arange(4))


def test_r0_final_size_and_rt_reject_inconsistent_parameters():
    p = {"beta": 0.5, "gamma": 0.25, "N": 1000.0}
    with pytest.raises(ValueError, match="removal rate"):
        R0(SIR(), {**p, "gamma": 0.0})
    with pytest.raises(ValueError, match="removal rate"):
        final_size(SIR(), {**p, "gamma": 0.0}, {"S": 990.0, "I": 10.0, "R": 0.0})
    assert float(R0(SIRD(), {"beta": 0.5, "gamma": 0.0, "mu": 0.1, "N": 1.0})) == 5.0
    traj = solve(SIR(), p, jnp.array([990.0, 10.0, 0.0]), jnp.arange(5.0))
    with pytest.raises(ValueError, match="smaller than the population"):
        effective_reproduction_number(SIR(), {**p, "N": 10.0}, traj)
    # y0 must hold the whole population (issue 22: fractions against a count N ran and
    # described another epidemic): a smaller sum is refused, in counts or in fractions.
    with pytest.raises(ValueError, match="less than the population.*same units"):
        solve(SIR(), p, jnp.array([490.0, 10.0, 0.0]), jnp.arange(5.0))
    with pytest.raises(ValueError, match="less than the population"):
        solve(SIR(), p, {"S": 0.99, "I": 0.01, "R": 0.0}, jnp.arange(5.0))
    with pytest.raises(ValueError, match="less than the population"):
        solve_ensemble(SIR(), p, jnp.array([[990.0, 10.0, 0.0], [0.99, 0.01, 0.0]]),
                       jnp.arange(5.0))


def test_solver_failure_names_the_cause_and_keeps_healthy_members():
    """Issue 22, class 4: a stiff member fails alone, by name, with a readable message."""
    ts = np.linspace(0.0, 100.0, 11)
    with pytest.raises(RuntimeError, match=r"solve failed for SIR \(beta=1e\+04, gamma=0.1\): "
                                           r"The maximum number of solver steps"):
        solve(SIR(), {"beta": 1e4, "gamma": 0.1, "N": N}, [999.0, 1.0, 0.0], ts, max_steps=100)
    betas = jnp.array([0.5, 1e4, 0.3, 2e4])
    p = {"beta": betas, "gamma": 0.1, "N": N}
    ens = solve_ensemble(SIR(), p, [999.0, 1.0, 0.0], ts, max_steps=100, throw=False,
                         mesh=False)
    np.testing.assert_array_equal(ens.success, [True, False, True, False])
    for i in (0, 2):  # the healthy members equal their lone solves
        lone = solve(SIR(), {"beta": float(betas[i]), "gamma": 0.1, "N": N}, [999.0, 1.0, 0.0],
                     ts, max_steps=100)
        np.testing.assert_allclose(ens.ys[i], lone.ys, rtol=1e-4, atol=1e-3)
    with pytest.raises(RuntimeError, match=r"2 of 4 members.*member 1 \(beta=1e\+04, gamma=0.1\), "
                                           r"3 \(beta=2e\+04, gamma=0.1\)"):
        solve_ensemble(SIR(), p, [999.0, 1.0, 0.0], ts, max_steps=100, mesh=False)
