"""Tests of epinn.stochastic: exact, tau-leaping and chain-binomial simulation.

Each distributional test uses a fixed key, so it is deterministic; its bound is stated in
its docstring with the sample size. References are computed independently here: the exact
final-size distribution of the Markovian SIR by dynamic programming over the embedded jump
chain, the Reed-Frost distribution by dynamic programming over generations, and the ODE
with diffrax (epinn.compartmental.solve).
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import stats

from epinn import R0, SIR, Model, SIRVitalDynamics, flow, infection, solve, stratify
from epinn.stochastic import (
    MemberSummaries,
    StochasticTrajectory,
    extinction_probability,
    final_size_distribution,
    final_sizes,
    member_summaries,
    outbreak_summary,
    peaks,
    plot_ensemble,
    simulate,
    simulate_summaries,
)
from tests.helpers import count_compilations

M = 2000  # members of the distributional tests (one compilation per method shares them)
TS = np.array([0.0, 100.0])  # long enough for every SIR outbreak here to end


# -- independent references -------------------------------------------------------------


def markov_sir_final_size(N: int, I0: int, beta: float, gamma: float) -> np.ndarray:
    """P(final size = k), k = 0..S0, of the Markovian SIR by DP over the embedded jump chain.

    From (s, i) with i > 0 the next event is an infection with probability
    beta s i / N / (beta s i / N + gamma i) = beta s / (beta s + gamma N), else a recovery.
    """
    S0 = N - I0
    P = np.zeros((S0 + 1, N + 1))  # probability of visiting (s, i)
    P[S0, I0] = 1.0
    final = np.zeros(S0 + 1)
    for s in range(S0, -1, -1):  # s never increases; within s, i decreases by recoveries
        for i in range(N, 0, -1):
            if P[s, i] == 0.0:
                continue
            p_inf = beta * s / (beta * s + gamma * N)
            if s > 0:
                P[s - 1, i + 1] += P[s, i] * p_inf
            if i - 1 == 0:
                final[S0 - s] += P[s, i] * (1 - p_inf)
            else:
                P[s, i - 1] += P[s, i] * (1 - p_inf)
    return final


def reed_frost_final_size(S0: int, I0: int, p: float) -> np.ndarray:
    """P(final size = k) of the Reed-Frost chain binomial: I' ~ Bin(S, 1 - (1-p)^I)."""
    dist = {(S0, I0): 1.0}
    final = np.zeros(S0 + 1)
    while dist:
        nxt = {}
        for (s, i), w in dist.items():
            if i == 0:
                final[S0 - s] += w
                continue
            pmf = stats.binom.pmf(np.arange(s + 1), s, 1 - (1 - p) ** i)
            for j, q in enumerate(pmf):
                nxt[(s - j, j)] = nxt.get((s - j, j), 0.0) + w * q
        dist = nxt
    return final


def chi_square_pvalue(observed_sizes: np.ndarray, expected_p: np.ndarray) -> float:
    """Goodness of fit, with adjacent sizes pooled so that every bin expects >= 5."""
    n = len(observed_sizes)
    obs = np.bincount(observed_sizes, minlength=len(expected_p))[: len(expected_p)]
    bins_o, bins_e, o, e = [], [], 0.0, 0.0
    for k in range(len(expected_p)):
        o, e = o + obs[k], e + n * expected_p[k]
        if e >= 5:
            bins_o.append(o)
            bins_e.append(e)
            o, e = 0.0, 0.0
    bins_o[-1] += o
    bins_e[-1] += e
    return stats.chisquare(bins_o, np.array(bins_e) * n / np.sum(bins_e)).pvalue


SIR_P = {"beta": 2.0, "gamma": 1.0}


@pytest.fixture(scope="module")
def small_sir():
    """M = 2000 exact SIR outbreaks, N = 30, one initial infective, R0 = 2."""
    return simulate(SIR(), {**SIR_P, "N": 30.0}, [29, 1, 0], TS, key=jr.key(1), n=M)


# -- exactness ---------------------------------------------------------------------------


def test_exact_matches_markov_sir_final_size(small_sir):
    """Exact simulator vs the jump-chain DP (N = 30, R0 = 2, M = 2000): chi-square p > 1e-3
    and total variation below 0.06 (the expected TV of M = 2000 draws from the exact
    distribution is sum_k sqrt(p_k (1 - p_k) / M) / 2 ~ 0.03 at most)."""
    exact = markov_sir_final_size(30, 1, 2.0, 1.0)
    sizes = np.asarray(final_sizes(small_sir))
    assert not small_sir.capped.any() and (small_sir["I"][:, -1] == 0).all()
    assert chi_square_pvalue(sizes, exact) > 1e-3
    emp = np.bincount(sizes, minlength=30)[:30] / M
    assert 0.5 * np.abs(emp - exact).sum() < 0.06
    # the summary agrees with the same numbers
    dist = final_size_distribution(small_sir, length=30)
    np.testing.assert_allclose(dist.probability, emp, atol=1e-6)
    np.testing.assert_allclose(dist.se, np.sqrt(emp * (1 - emp) / M), rtol=1e-5)


def test_chain_binomial_matches_reed_frost():
    """Chain binomial with dt = 1, beta = -N log(1 - p), gamma = 50 (recovery within the
    step) is Reed-Frost: N = 20, p = 0.1, one initial infective, M = 2000; chi-square
    p > 1e-3 and total variation below 0.06."""
    N, p = 20, 0.1
    params = {"beta": -N * np.log1p(-p), "gamma": 50.0, "N": float(N)}
    sim = simulate(SIR(), params, [N - 1, 1, 0], TS, key=jr.key(2), n=M,
                   method="chain_binomial", dt=1.0)
    assert (sim.ys >= 0).all() and (sim.ys.sum(-1) == N).all()
    exact = reed_frost_final_size(N - 1, 1, p)
    sizes = np.asarray(final_sizes(sim))
    assert chi_square_pvalue(sizes, exact) > 1e-3
    emp = np.bincount(sizes, minlength=N)[:N] / M
    assert 0.5 * np.abs(emp - exact).sum() < 0.06


@pytest.mark.parametrize("k", [1, 2])
def test_minor_outbreak_probability_is_inverse_R0_power_k(k):
    """N = 1000, R0 = 2, k initial infectives, M = 2000 exact runs: P(minor outbreak, fewer
    than 100 infections) within 3 standard errors + 0.01 of (1/R0)^k (0.5, 0.25)."""
    N = 1000.0
    sim = simulate(SIR(), {**SIR_P, "N": N}, [N - k, k, 0], TS, key=jr.key(10 + k), n=M)
    est = extinction_probability(sim, threshold=100)
    target = (1 / float(R0(SIR(), {**SIR_P, "N": N}))) ** k
    assert abs(float(est.value) - target) < 3 * float(est.se) + 0.01
    assert float(est.se) == pytest.approx(np.sqrt(target * (1 - target) / M), rel=0.1)


def test_tau_leap_with_small_step_agrees_with_exact(small_sir):
    """Final sizes of tau-leaping (dt = 0.1) vs exact simulation, N = 30, M = 2000 each:
    chi-square two-sample (contingency) test on pooled sizes, p > 1e-3."""
    tau = simulate(SIR(), {**SIR_P, "N": 30.0}, [29, 1, 0], np.array([0.0, 30.0]),
                   key=jr.key(3), n=M, method="tau_leap", dt=0.1)
    assert (tau.ys >= 0).all() and (tau.ys.sum(-1) == 30).all()
    a, b = np.asarray(final_sizes(small_sir)), np.asarray(final_sizes(tau))
    edges = [0, 1, 2, 3, 5, 8, 12, 16, 20, 24, 31]
    table = np.stack([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_adaptive_tau_leap_agrees_with_exact_and_takes_fewer_steps():
    """Adaptive tau-leaping (Cao et al.'s step, epsilon = 0.03) vs exact simulation, SIR
    N = 2000, R0 = 2, one initial infective, M = 2000 each: chi-square two-sample
    (contingency) test on final sizes pooled into 12 bins, p > 1e-3; and in the major
    outbreaks it takes under 0.7x the exact method's steps (its events; ~0.5x seen), and
    fewer steps than tau-leaping with a fixed small step dt = 0.01 (~0.8x seen). (M = 2000
    and two-time grids share the compilations of the tests above.)
    At this size it leaps in the major outbreaks' middle and steps exactly while few are
    infected; at N = 10 000 it took ~10x fewer steps than the exact method, its major
    outbreaks' mean final size 2 people (0.02% of N) above exact (30 with the rates held at
    each leap's start instead of the midpoint's: the O(step) bias of plain tau-leaping)."""
    N = 2000.0
    p = {**SIR_P, "N": N}
    exact = simulate(SIR(), p, [N - 1, 1, 0], TS, key=jr.key(20), n=M)
    adaptive = simulate(SIR(), p, [N - 1, 1, 0], TS, key=jr.key(21), n=M, method="tau_leap")
    assert (adaptive.ys >= 0).all() and (adaptive.ys.sum(-1) == N).all()
    assert not adaptive.capped.any() and (adaptive["I"][:, -1] == 0).all()
    a, b = np.asarray(final_sizes(exact)), np.asarray(final_sizes(adaptive))
    edges = [0, 1, 2, 3, 5, 10, 50, 1400, 1500, 1550, 1600, 1650, 2001]
    table = np.stack([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > 1e-3
    major = a > 100
    assert adaptive.steps[b > 100].mean() < 0.7 * exact.steps[major].mean()
    fixed = simulate(SIR(), p, [N - 1, 1, 0], TS, key=jr.key(22), n=M, method="tau_leap",
                     dt=0.01)
    fixed_sizes = np.asarray(final_sizes(fixed))
    assert adaptive.steps[b > 100].mean() < 0.95 * fixed.steps[fixed_sizes > 100].mean()
    np.testing.assert_array_equal(adaptive.steps >= 1, True)


# -- reproducibility, integrality, conservation -----------------------------------------


def test_same_key_same_bits(small_sir):
    again = simulate(SIR(), {**SIR_P, "N": 30.0}, [29, 1, 0], TS, key=jr.key(1), n=M)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda x, y: bool(jnp.array_equal(x, y)), again, small_sir))
    other = simulate(SIR(), {**SIR_P, "N": 30.0}, [29, 1, 0], TS, key=jr.key(7), n=M)
    assert not jnp.array_equal(other.ys, small_sir.ys)


def _hostile_model():
    """2 groups, a vaccination flow at a constant rate (it would drive S negative if the
    simulators did not stop it), waning, and a beta that is a function of time."""
    base = Model(("S", "I", "R", "V"), ("beta", "gamma", "nu", "omega"), [
        infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
        flow("I", "R", lambda t, y, p: p.gamma * y.I),
        flow("S", "V", lambda t, y, p: p.nu + 0.0 * y.S),
        flow("R", "S", lambda t, y, p: p.omega * y.R)])
    return stratify(base, 2)


HOSTILE = _hostile_model()
HOSTILE_TS = np.linspace(0.0, 20.0, 11)


def seasonal_beta(t):
    """beta(t) of HOSTILE (module level: equal functions share one compilation)."""
    return 3.0 * (1.0 + jnp.sin(t)) * jnp.ones(2)


def hostile_params(C=((0.8, 0.2), (0.3, 0.7))):
    return {"beta": seasonal_beta, "gamma": 1.0, "nu": 4.0, "omega": 0.3, "C": np.array(C),
            "N": np.array([40.0, 60.0])}


@pytest.mark.parametrize("method,dt", [
    ("exact", None), ("tau_leap", 0.5),
    pytest.param("chain_binomial", 0.5, marks=pytest.mark.slow),
    pytest.param("tau_leap", None, marks=pytest.mark.slow)])
def test_counts_never_negative_and_conserved(method, dt):
    """Integer counts, never negative, each group's total exactly conserved, and the state
    equals y0 plus the flow counts times the stoichiometry (M = 64, 2 groups). (The chain
    binomial's non-negativity and conservation are also checked in the Reed-Frost test.)"""
    y0 = np.array([[35, 55], [5, 0], [0, 5], [0, 0]])
    sim = simulate(HOSTILE, hostile_params(), y0, HOSTILE_TS, key=jr.key(4), n=64,
                   method=method, dt=dt)
    assert sim.ys.shape == (64, 11, 4, 2) and sim.ys.dtype == jnp.int32
    assert (sim.ys >= 0).all()
    np.testing.assert_array_equal(sim.ys.sum(2), np.broadcast_to([40, 60], (64, 11, 2)))
    S = np.asarray(HOSTILE.stoichiometry)
    np.testing.assert_array_equal(sim.ys, y0 + np.einsum("mtfg,fc->mtcg", sim.counts, S))
    assert (sim.flow_count("S->V")[:, -1] > 0).all()
    assert (sim.events == sim.counts[:, -1].sum((1, 2))).all()


def test_stratified_groups_are_separate_channels():
    """With a diagonal contact matrix, infection never crosses into group 2 (no infected
    there, no waning into I): every flow in every group is its own channel."""
    y0 = np.array([[35, 60], [5, 0], [0, 0], [0, 0]])
    sim = simulate(HOSTILE, hostile_params(C=np.eye(2)), y0, HOSTILE_TS, key=jr.key(8), n=64)
    assert (sim["I"][..., 1] == 0).all() and (sim.flow_count("S->I")[..., 1] == 0).all()
    assert (sim.flow_count("S->I")[:, -1, 0] > 0).any()
    assert (sim.flow_count("S->V")[:, -1, 1] > 0).all()


def test_time_varying_rate_is_reevaluated_at_saved_times():
    """beta(t) = 2 before t = 3 and 0 after: with 3 in ts no infection happens after it
    (the exact method re-evaluates the rates at every saved time and event)."""
    ts = np.array([0.0, 3.0, 10.0])
    sim = simulate(SIR(), {"beta": lambda t: jnp.where(t < 3.0, 2.0, 0.0), "gamma": 1.0,
                           "N": 50.0}, [45, 5, 0], ts, key=jr.key(5), n=200)
    inf = sim.flow_count("S->I")
    assert (inf[:, 1] > 0).any()
    np.testing.assert_array_equal(inf[:, 2], inf[:, 1])


@pytest.mark.parametrize("method", ["exact", "tau_leap"])
def test_event_cap_freezes_and_flags(method):
    """At N = 30 adaptive tau-leaping takes exact steps only (fewer than 10 events are
    expected in any leap), so both stop at exactly 5 events."""
    sim = simulate(SIR(), {**SIR_P, "N": 30.0}, [20, 10, 0], TS, key=jr.key(6), n=M,
                   max_events=5, method=method)
    assert sim.capped.all() and (sim.events == 5).all() and (sim.steps == 5).all()
    assert (sim.ys[:, -1].sum(-1) == 30).all()


def test_ensemble_axes_and_jit_vmap():
    """Per-member parameters and initial states; simulate under jax.jit and jax.vmap."""
    betas = np.array([0.0, 0.0, 4.0])
    sim = simulate(SIR(), {"beta": betas, "gamma": 1.0, "N": 20.0}, [19, 1, 0], TS,
                   key=jr.key(9))
    assert sim.ys.shape == (3, 2, 3)
    assert (final_sizes(sim)[:2] == 0).all()

    @jax.jit
    def fs(beta, key):
        s = simulate(SIR(), {"beta": beta, "gamma": 1.0, "N": 20.0}, jnp.array([19, 1, 0]),
                     jnp.asarray(TS), key=key, n=3)
        return final_sizes(s)

    keys = jnp.stack([jr.key(9), jr.key(10)])
    many = jax.vmap(fs, in_axes=(None, 0))(jnp.asarray(betas), keys)
    assert many.shape == (2, 3)
    np.testing.assert_array_equal(many[0], final_sizes(sim))  # same key -> same bits
    np.testing.assert_array_equal(many[:, :2], 0)


# -- the mean follows the ODE ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method,dt", [("exact", None), ("tau_leap", 0.02),
                                       ("chain_binomial", 0.02)])
def test_mean_converges_to_ode(method, dt):
    """I/N averaged over M = 400 members, 5% initially infected (so hardly any early
    extinction), R0 = 2: max over t in [0, 15] of |mean - ODE| shrinks as N grows
    100 -> 1600 and is below 0.006 at N = 1600. Observed (N = 100, 400, 1600, 6400):
    exact 0.022, 0.0065, 0.0021, 0.0008 (about 1/N plus 1/sqrt(M N) noise); tau-leap and
    chain binomial (dt = 0.02) 0.023-0.026, 0.004, 0.002, then level at 0.002-0.0035, their
    O(dt) distance from the ODE."""
    ts = np.linspace(0.0, 15.0, 31)
    errors = []
    for N in (100, 400, 1600):
        y0 = [0.95 * N, 0.05 * N, 0]
        sim = simulate(SIR(), {**SIR_P, "N": float(N)}, y0, ts, key=jr.key(N), n=400,
                       method=method, dt=dt)
        ode = solve(SIR(), {**SIR_P, "N": float(N)}, {"S": y0[0], "I": y0[1], "R": 0.0}, ts)
        errors.append(float(jnp.max(jnp.abs(sim["I"].mean(0) - ode["I"]))) / N)
    assert errors[2] < errors[0] / 2 and errors[2] < 0.006, errors


# -- summaries and plot ------------------------------------------------------------------


def test_summaries(small_sir):
    """Peaks, extinction and the major-outbreak means against direct numpy computations."""
    infected = np.asarray(small_sir["I"])
    pk = peaks(small_sir)
    np.testing.assert_array_equal(pk.size, infected.max(1))
    np.testing.assert_array_equal(pk.time, TS[infected.argmax(1)])
    sizes = np.asarray(final_sizes(small_sir))
    summ = outbreak_summary(small_sir, threshold=5)
    major = sizes >= 5
    np.testing.assert_array_equal(summ.major, major)
    assert float(summ.extinction.value) == pytest.approx(1 - major.mean(), abs=1e-6)
    assert float(summ.final_size.value) == pytest.approx(sizes[major].mean(), rel=1e-5)
    assert float(summ.final_size.se) == pytest.approx(
        sizes[major].std(ddof=1) / np.sqrt(major.sum()), rel=1e-4)
    with pytest.raises(ValueError, match="threshold"):
        extinction_probability(small_sir, threshold=0)
    with pytest.raises(ValueError, match="compartments"):
        peaks(small_sir, "X")


def test_summaries_of_member_summaries_equal_those_of_trajectories(small_sir):
    """Every summary function gives the same numbers from member_summaries(sim) as from
    sim itself (the reduction keeps what they need)."""
    ms = member_summaries(small_sir)
    assert isinstance(ms, MemberSummaries) and ms.final_size.shape == (M,)
    np.testing.assert_array_equal(final_sizes(ms), final_sizes(small_sir))
    for f in (lambda s: extinction_probability(s, threshold=5),
              lambda s: final_size_distribution(s, length=30),
              lambda s: peaks(s), lambda s: outbreak_summary(s, threshold=5)):
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(
            lambda x, y: bool(jnp.array_equal(x, y)), f(ms), f(small_sir)))
    np.testing.assert_array_equal(ms.steps, small_sir.events)  # exact: a step per event
    with pytest.raises(ValueError, match="compartments"):
        peaks(ms, "S")
    with pytest.raises(TypeError, match="simulate"):
        member_summaries(ms)


def test_simulate_summaries_in_chunks_equals_summaries_of_each_chunk():
    """n = 10 in chunks of 4 (the last padded): chunk c equals member_summaries of
    simulate(key=fold_in(key, c), n=4); per-member parameters are sliced by chunk (the
    members with beta = 0 have no infections)."""
    p = {"beta": np.array([2.0, 0.0] * 5), "gamma": 1.0, "N": 30.0}
    ts = np.array([0.0, 2.0, 100.0])
    key = jr.key(12)
    out = simulate_summaries(SIR(), p, [29, 1, 0], ts, key=key, n=10, chunk=4)
    assert isinstance(out.final_size, np.ndarray) and out.final_size.shape == (10,)
    assert (out.final_size[1::2] == 0).all()
    parts = [member_summaries(simulate(
        SIR(), {**p, "beta": np.resize(p["beta"][4 * c:4 * c + 4], 4)}, [29, 1, 0], ts,
        key=jr.fold_in(key, c))) for c in range(3)]
    for name, got in out._asdict().items():
        want = np.concatenate([np.asarray(getattr(q, name)) for q in parts])[:10]
        np.testing.assert_array_equal(got, want, err_msg=name)
    with pytest.raises(ValueError, match="chunk"):
        simulate_summaries(SIR(), p, [29, 1, 0], ts, key=key, n=10, chunk=0)
    with pytest.raises(ValueError, match="`n`"):
        simulate_summaries(SIR(), p, [29, 1, 0], ts, key=key, n=4)


def test_plot_ensemble_draws_bands_and_deterministic_curve(small_sir):
    import matplotlib.pyplot as plt

    class Curve:  # stands in for an epinn Trajectory (ts and traj[name]); no ODE compile
        ts = np.linspace(0.0, 100.0, 5)

        def __getitem__(self, name):
            return np.array([1.0, 3.0, 2.0, 1.0, 0.0])

    sim, ode = small_sir, Curve()
    fig, ax = plt.subplots()
    out = plot_ensemble(ax, sim, deterministic=ode)
    assert out is ax and len(ax.collections) == 2 and len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.median(sim["I"], 0))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), ode["I"])
    plt.close(fig)


# -- bad input ---------------------------------------------------------------------------


def _negative_rate_model():
    return Model(("S", "I", "R"), ("beta", "gamma"), [
        infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
        flow("I", "R", lambda t, y, p: p.gamma * (y.I - 3.0))])


GOOD = dict(model=SIR(), params={"beta": 2.0, "gamma": 1.0, "N": 30.0}, y0=[29, 1, 0],
            ts=[0.0, 1.0, 2.0])


@pytest.mark.parametrize("change,exc,match", [
    (dict(y0=[28.5, 1.5, 0]), ValueError, "y0.*whole numbers"),
    (dict(y0=[30, -1, 0]), ValueError, "y0.*non-negative"),
    (dict(y0=[29, 1]), ValueError, "y0.*shape"),
    (dict(y0={"S": 29, "I": 1}), ValueError, "y0.*missing"),
    (dict(y0=[40, 1, 0]), ValueError, "y0.*more than the population"),
    (dict(y0=[20, 1, 0]), ValueError, "y0.*less than the population"),
    (dict(ts=[0.0, 2.0, 1.0]), ValueError, "ts.*increasing"),
    (dict(ts=[0.0]), ValueError, "ts"),
    (dict(method="tau_leap", dt=0.0), ValueError, "dt.*positive"),
    (dict(method="chain_binomial", dt=-1.0), ValueError, "dt.*positive"),
    (dict(method="chain_binomial"), ValueError, "dt.*required"),
    (dict(method="tau_leap", dt=0.1, epsilon=0.03), ValueError, "epsilon"),
    (dict(method="tau_leap", epsilon=1.5), ValueError, "epsilon.*0, 1"),
    (dict(epsilon=0.03), ValueError, "epsilon"),
    (dict(dt=0.1), ValueError, "dt"),
    (dict(method="gillespie"), ValueError, "method"),
    (dict(max_events=0), ValueError, "max_events"),
    (dict(n=0), ValueError, "`n`"),
    (dict(n=3, params={"beta": np.ones(2), "gamma": 1.0, "N": 30.0}), ValueError, "`n`"),
    (dict(params={"beta": -2.0, "gamma": 1.0, "N": 30.0}), ValueError, r"params\['beta'\]"),
    (dict(params={"beta": 2.0, "N": 30.0}), ValueError, "missing"),
    (dict(model=_negative_rate_model()), ValueError, "flow 'I->R'.*non-negative"),
    (dict(model=_negative_rate_model(), y0=np.array([[25, 5, 0], [29, 1, 0]])), ValueError,
     "flow 'I->R'.*member 1's initial state"),
    (dict(key=0), TypeError, "key"),
    (dict(model="SIR"), TypeError, "model"),
])
def test_bad_input_named_before_compilation(change, exc, match):
    args = {**GOOD, "key": jr.key(0), **change}
    model, params, y0, ts = (args.pop(k) for k in ("model", "params", "y0", "ts"))
    with count_compilations() as c, pytest.raises(exc, match=match):
        simulate(model, params, y0, ts, **args)
    assert c.count == 0


@pytest.mark.parametrize("method,dt", [
    ("tau_leap", 0.25), pytest.param("exact", None, marks=pytest.mark.slow)])
def test_open_model_births_are_poisson(method, dt):
    """SIR with births (a flow from outside at rate mu N) and deaths, M = 256: counts never
    negative, the state is y0 plus the flow counts, and the births over [0, 20] average
    mu N T = 40 within 4 standard errors of a Poisson(40) mean."""
    model = SIRVitalDynamics()
    params = {"beta": 2.0, "gamma": 1.0, "mu": 0.02, "N": 100.0}
    y0 = np.array([90, 10, 0])
    sim = simulate(model, params, y0, np.linspace(0.0, 20.0, 5), key=jr.key(11), n=256,
                   method=method, dt=dt)
    assert (sim.ys >= 0).all()
    np.testing.assert_array_equal(
        sim.ys, y0 + np.einsum("mtf,fc->mtc", sim.counts, np.asarray(model.stoichiometry)))
    births = np.asarray(sim.flow_count("births")[:, -1], float)
    assert abs(births.mean() - 40.0) < 4 * np.sqrt(40.0 / 256)


def test_params_namedtuple_is_the_mapping(small_sir):
    again = simulate(SIR(), SIR.Params(beta=2.0, gamma=1.0, N=30.0), [29, 1, 0], TS,
                     key=jr.key(1), n=M)
    np.testing.assert_array_equal(again.ys, small_sir.ys)


def test_result_accessors(small_sir):
    assert isinstance(small_sir, StochasticTrajectory) and small_sir.n_members == M
    with pytest.raises(KeyError, match="compartments"):
        small_sir["X"]
    with pytest.raises(KeyError, match="flows"):
        small_sir.flow_count("X")


# -- the random numbers ------------------------------------------------------------------


def test_xoshiro128ss_matches_reference():
    """The per-event generator equals a plain-Python xoshiro128** (Blackman & Vigna)."""
    from epinn.stochastic._random import _xoshiro128ss

    mask = 0xFFFFFFFF

    def rotl(x, k):
        return ((x << k) | (x >> (32 - k))) & mask

    s, ref = [123456789, 362436069, 521288629, 88675123], []
    for _ in range(8):
        ref.append((rotl((s[1] * 5) & mask, 7) * 9) & mask)
        t = (s[1] << 9) & mask
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
    state, out = jnp.array([123456789, 362436069, 521288629, 88675123], jnp.uint32), []
    for _ in range(8):
        state, r = _xoshiro128ss(state)
        out.append(int(r))
    assert out == ref and [int(v) for v in state] == s


@pytest.mark.parametrize("lam", [0.0, 0.7, 9.9, 10.0, 40.0, 1000.0])
def test_poisson_sampler(lam):
    """The tau-leap Poisson draws (inversion below 10, PTRS above), 4000 draws: chi-square
    goodness of fit against scipy's pmf on pooled bins, p > 1e-3."""
    from epinn.stochastic._random import _poisson, _seed_streams

    n = 4000
    _, k = jax.jit(_poisson)(_seed_streams(jr.key(int(lam * 10)), (n,)), jnp.full((n,), lam))
    k = np.asarray(k).astype(int)
    if lam == 0.0:
        assert (k == 0).all()
        return
    dist = stats.poisson(lam)
    lo, hi = int(dist.ppf(1e-7)), int(dist.ppf(1 - 1e-7)) + 1
    expected = np.append(dist.pmf(np.arange(lo, hi)), 0.0)
    expected[-1] = 1 - expected.sum()
    assert chi_square_pvalue(np.clip(k - lo, 0, hi - lo), expected) > 1e-3


@pytest.mark.parametrize("n,p", [(0, 0.3), (5, 1.0), (7, 0.0), (20, 0.1), (20, 0.9),
                                 (100, 0.5), (1000, 0.3), (763, 0.999)])
def test_binomial_sampler(n, p):
    """The chain-binomial draws (inversion for n min(p, 1-p) <= 10, BTRS above), 4000 draws:
    exact for the degenerate cases, else chi-square goodness of fit on pooled bins,
    p > 1e-3."""
    from epinn.stochastic._random import _binomial, _seed_streams

    m = 4000
    _, k = jax.jit(_binomial)(_seed_streams(jr.key(n), (m,)), jnp.full((m,), float(n)),
                              jnp.full((m,), p))
    k = np.asarray(k).astype(int)
    dist = stats.binom(n, p)
    if dist.var() == 0:
        assert (k == dist.mean()).all()
        return
    lo, hi = int(dist.ppf(1e-7)), int(dist.ppf(1 - 1e-7)) + 1
    expected = np.append(dist.pmf(np.arange(lo, hi)), 0.0)
    expected[-1] = 1 - expected.sum()
    assert chi_square_pvalue(np.clip(k - lo, 0, hi - lo), expected) > 1e-3
