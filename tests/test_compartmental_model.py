"""Tests for epinn.compartmental.model: models defined by their flows, checked against independent references.

References: scipy.integrate.solve_ivp on right-hand sides written out again here in numpy
(with an explicit cumulative-infection state), next-generation matrices built by hand in
numpy, closed forms (Ross-Macdonald), central finite differences, conservation laws.
Tolerances: solves at rtol 1e-10 in float64 agree with scipy's DOP853 at rtol 1e-12 to 1e-6
relative (the ODE error, far below it); R0 values to 1e-10 in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import epinn
from epinn.compartmental import (
    R0,
    SEIR,
    SEIRD,
    SIR,
    SIRD,
    SIRS,
    SIRVitalDynamics,
    effective_reproduction_number,
    final_size,
    growth_rate,
    incidence,
    solve,
    solve_ensemble,
)
from epinn.compartmental import Model, flow, infection, next_generation_matrices, stratify
from tests.helpers import central_difference, count_compilations

TIGHT = dict(rtol=1e-10, atol=1e-12)


def sirv_model():
    return Model(
        ("S", "I", "R", "V"), ("beta", "gamma", "nu"),
        [infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
         flow("I", "R", lambda t, y, p: p.gamma * y.I),
         flow("S", "V", lambda t, y, p: p.nu * y.S, name="vaccination")],
        name="SIRV",
    )


SIRV_P = {"beta": 0.5, "gamma": 0.2, "nu": 0.01, "N": 1000.0}
SIRV_Y0 = {"S": 990.0, "I": 10.0, "R": 0.0, "V": 0.0}


def seir_groups(G=3):
    def force(t, y, p):
        return p.beta * y.S * (p.C @ (y.I / p.N))

    return Model(
        ("S", "E", "I", "R"),
        {"beta": (), "sigma": (), "gamma": ("groups",), "C": ("groups", "groups")},
        [infection("S", "E", force),
         flow("E", "I", lambda t, y, p: p.sigma * y.E),
         flow("I", "R", lambda t, y, p: p.gamma * y.I)],
        groups=("young", "adult", "old")[:G] if G == 3 else G,
        name="SEIR by age",
    )


AGE_N = np.array([300.0, 500.0, 200.0])
AGE_C = np.array([[2.0, 0.6, 0.2], [0.6, 1.2, 0.4], [0.2, 0.4, 0.8]])
AGE_P = {"beta": 0.3, "sigma": 0.25, "gamma": np.array([0.2, 0.15, 0.1]), "C": AGE_C,
         "N": AGE_N}
AGE_Y0 = {"S": AGE_N - np.array([1.0, 2.0, 0.0]), "E": np.zeros(3),
          "I": np.array([1.0, 2.0, 0.0]), "R": np.zeros(3)}


def host_vector_model():
    """Ross-Macdonald-type: hosts S-I-R, vectors S-I with births = deaths."""
    return Model(
        ("Sh", "Ih", "Rh", "Sv", "Iv"),
        ("a", "b", "c", "gamma", "mu_v", "Nh", "Nv"),
        [infection("Sh", "Ih", lambda t, y, p: p.a * p.b * y.Sh * y.Iv / p.Nh, name="host"),
         infection("Sv", "Iv", lambda t, y, p: p.a * p.c * y.Sv * y.Ih / p.Nh, name="vector"),
         flow("Ih", "Rh", lambda t, y, p: p.gamma * y.Ih),
         flow(None, "Sv", lambda t, y, p: p.mu_v * (y.Sv + y.Iv), name="births"),
         flow("Sv", None, lambda t, y, p: p.mu_v * y.Sv),
         flow("Iv", None, lambda t, y, p: p.mu_v * y.Iv)],
        disease_free=lambda p: {"Sh": p.Nh, "Sv": p.Nv},
        name="host-vector",
    )


HV_P = {"a": 0.3, "b": 0.5, "c": 0.4, "gamma": 1 / 7, "mu_v": 0.1, "Nh": 1000.0,
        "Nv": 3000.0, "N": 4000.0}


# -- the definition ------------------------------------------------------------------


def test_builtins_are_flow_definitions():
    assert isinstance(SIR(), Model) and SIR() == SIR() and hash(SIR()) == hash(SIR())
    facts = {m.name: (m.infected, m.conserved, m.infections_from, m._derived,
                      m.final_size_reason is None)
             for m in (SIR(), SIRD(), SIRS(), SEIR(), SEIRD(), SIRVitalDynamics())}
    assert facts["SIR"] == (("I",), True, "S", "R", True)
    assert facts["SIRD"] == (("I",), True, "S", "D", True)
    assert facts["SIRS"][:3] == (("I",), True, None) and not facts["SIRS"][4]
    assert facts["SEIR"] == (("E", "I"), True, "S", "R", True)
    assert facts["SEIRD"][0] == ("E", "I") and facts["SEIRD"][4]
    assert facts["SIRVitalDynamics"] == (("I",), False, None, None, False)


def test_sirv_structure():
    m = sirv_model()
    assert m.infected == ("I",)
    assert m.conserved and m._derived == "V"
    assert m.infections_from is None  # S also falls by vaccination
    assert "vaccination" in m.final_size_reason
    assert m.flow_names() == ("S->I", "I->R", "vaccination")


def test_host_vector_structure():
    m = host_vector_model()
    assert m.infected == ("Ih", "Iv")
    assert not m.conserved
    assert not m.structure.homogeneous  # rates use the parameters Nh, Nv


BAD_DEFINITIONS = [  # (a function giving the arguments that differ, what the message says)
    (lambda: dict(flows=[flow("S", "X", lambda t, y, p: y.S)]), "unknown compartment 'X'"),
    (lambda: dict(compartments=("S", "I", "S")), "duplicate"),
    (lambda: dict(params=("beta", "beta")), "duplicate"),
    (lambda: dict(flows=[flow("I", "I", lambda t, y, p: y.I)]), "itself"),
    (lambda: dict(flows=[flow("I", "R", lambda t, y, p: jnp.ones(2) * y.I)]), "shape"),
    (lambda: dict(flows=[flow("I", "R", lambda t, y, p: p.delta * y.I)]), "delta"),
    (lambda: dict(flows=[]), "empty"),
    (lambda: dict(flows=[flow("I", "R", lambda t, y, p: p.gamma * y.I, name="x"),
                         flow("S", "I", lambda t, y, p: y.S, name="x")]), "unique"),
    (lambda: dict(params={"beta": ("groups",), "gamma": ()}), "groups"),
    (lambda: dict(compartments=("S", "I", "2R")), "identifier"),
    (lambda: dict(flows=[flow(None, None, lambda t, y, p: 1.0)]), "source"),
    (lambda: dict(flows=["S->I"]), "epinn.flow"),
]


@pytest.mark.parametrize("make, match", BAD_DEFINITIONS)
def test_bad_definitions_raise_before_compiling(make, match):
    base = dict(
        compartments=("S", "I", "R"), params=("beta", "gamma"),
        flows=[infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
               flow("I", "R", lambda t, y, p: p.gamma * y.I)],
    )
    with count_compilations() as c, pytest.raises((ValueError, TypeError), match=match):
        base.update(make())
        Model(**base)
    assert c.count == 0


def test_bad_parameter_shapes_and_missing_infection():
    m = seir_groups()
    with pytest.raises(ValueError, match=r"params\['C'\].*declared shape \(3, 3\)"):
        solve(m, {**AGE_P, "C": np.ones((2, 2))}, AGE_Y0, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"params\['N'\].*each of the 3 groups"):
        solve(m, {**AGE_P, "N": 1000.0}, AGE_Y0, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"y0\['S'\].*per group"):
        solve(m, AGE_P, {**AGE_Y0, "S": np.ones(2)}, [0.0, 1.0])
    no_infection = Model(("A", "B"), ("k",), [flow("A", "B", lambda t, y, p: p.k * y.A)])
    with pytest.raises(ValueError, match="no infection flow"):
        R0(no_infection, {"k": 1.0, "N": 1.0})
    with pytest.raises(ValueError, match="hops"):
        R0(SIR(), {"beta": 1.0, "gamma": 0.5, "N": 1.0}, hops=0)


def test_negative_flow_rates_are_refused_before_integrating():
    """A rate function that is negative at the initial state moves people backwards: an
    error naming the flow (and the member / group), for one solve and for ensembles."""
    leaky = Model(("S", "I", "R"), ("beta", "gamma"), [
        infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
        flow("I", "R", lambda t, y, p: p.gamma * y.I - 5.0)])
    p = {"beta": 0.5, "gamma": 0.1, "N": 1000.0}
    y0 = {"S": 990.0, "I": 10.0, "R": 0.0}
    with pytest.raises(ValueError, match=r"flow 'I->R' \(I -> R\) is -4 at the initial state"):
        solve(leaky, p, y0, [0.0, 1.0])
    with pytest.raises(ValueError, match="is -4 at the initial state of member 1"):
        solve_ensemble(leaky, {**p, "gamma": np.array([0.6, 0.1])}, y0, [0.0, 1.0])
    # With enough infectives the same model is valid at t0 and integrates.
    assert solve(leaky, p, {"S": 900.0, "I": 100.0, "R": 0.0}, [0.0, 1.0]).ys.shape == (2, 3)
    m = seir_groups()
    growing = {**AGE_P, "sigma": lambda t: 0.2 - 0.3 * (t > -1.0)}  # negative from t0 on
    with pytest.raises(ValueError, match="non-negative"):
        solve(m, growing, AGE_Y0, [0.0, 1.0])


# -- SIR with vaccination ------------------------------------------------------------


def _sirv_reference(ts):
    b, g, nu, N = (SIRV_P[k] for k in ("beta", "gamma", "nu", "N"))

    def rhs(t, z):
        S, I, R, V, cum = z
        new = b * S * I / N
        return [-new - nu * S, new - g * I, g * I, nu * S, new]

    z0 = [990.0, 10.0, 0.0, 0.0, 0.0]
    return solve_ivp(rhs, (ts[0], ts[-1]), z0, t_eval=ts, method="DOP853", rtol=1e-12,
                     atol=1e-12).y


def test_sirv_incidence_matches_scipy(x64):
    ts = np.linspace(0.0, 120.0, 61)
    ref = _sirv_reference(ts)
    traj = solve(sirv_model(), SIRV_P, SIRV_Y0, ts, **TIGHT)
    np.testing.assert_allclose(traj.ys.T, ref[:4], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(incidence(traj), np.diff(ref[4]), rtol=1e-6, atol=1e-6)
    # -dS counts vaccinations as infections: the wrong answer the flows prevent.
    assert np.max(np.abs(-np.diff(ref[0]) - np.diff(ref[4]))) > 10.0
    # the ensemble path integrates the same extra state
    ens = solve_ensemble(sirv_model(), {**SIRV_P, "nu": np.array([0.01, 0.0])}, SIRV_Y0, ts,
                         **TIGHT)
    np.testing.assert_allclose(incidence(ens)[0], np.diff(ref[4]), rtol=1e-6, atol=1e-6)
    sir = solve(SIR(), {"beta": 0.5, "gamma": 0.2, "N": 1000.0},
                {"S": 990.0, "I": 10.0, "R": 0.0}, ts, **TIGHT)
    np.testing.assert_allclose(incidence(ens)[1], incidence(sir), rtol=1e-6, atol=1e-6)


def test_sirv_final_size_refused_with_reason():
    with pytest.raises(ValueError, match="vaccination"):
        final_size(sirv_model(), SIRV_P, SIRV_Y0)


def test_sirv_r0_and_growth_rate():
    r0 = R0(sirv_model(), SIRV_P)
    np.testing.assert_allclose(r0, 0.5 / 0.2, rtol=1e-6)
    r = growth_rate(sirv_model(), SIRV_P, SIRV_Y0)
    np.testing.assert_allclose(r, 0.5 * 990 / 1000 - 0.2, rtol=1e-5)


def test_custom_final_size_with_branching_infected_compartments(x64):
    """E -> I or E -> A (asymptomatic, less infectious): the general a^T X0 term."""
    m = Model(
        ("S", "E", "I", "A", "R"), ("beta", "sigma", "p_sym", "kappa", "gamma"),
        [infection("S", "E", lambda t, y, p: p.beta * y.S * (y.I + p.kappa * y.A) / p.N),
         flow("E", "I", lambda t, y, p: p.p_sym * p.sigma * y.E),
         flow("E", "A", lambda t, y, p: (1 - p.p_sym) * p.sigma * y.E),
         flow("I", "R", lambda t, y, p: p.gamma * y.I),
         flow("A", "R", lambda t, y, p: p.gamma * y.A)],
    )
    assert m.final_size_reason is None and m.infected == ("E", "I", "A")
    p = {"beta": 0.6, "sigma": 0.3, "p_sym": 0.6, "kappa": 0.5, "gamma": 0.2, "N": 1000.0}
    y0 = {"S": 980.0, "E": 5.0, "I": 5.0, "A": 10.0, "R": 0.0}
    fs = final_size(m, p, y0)
    late = solve(m, p, y0, np.array([0.0, 2000.0]), **TIGHT)
    np.testing.assert_allclose(fs.susceptible, late["S"][-1], rtol=1e-6)
    np.testing.assert_allclose(R0(m, p), 0.6 / 0.2 * (0.6 + 0.4 * 0.5), rtol=1e-10)


# -- age-structured SEIR --------------------------------------------------------------


def _seir_groups_reference(ts, p=AGE_P, y0=AGE_Y0):
    b, s, g, C, N = (np.asarray(p[k], float) for k in ("beta", "sigma", "gamma", "C", "N"))

    def rhs(t, z):
        S, E, I, R = z.reshape(4, 3)
        new = b * S * (C @ (I / N))
        return np.concatenate([-new, new - s * E, s * E - g * I, g * I])

    z0 = np.concatenate([np.asarray(y0[c], float) for c in "SEIR"])
    return solve_ivp(rhs, (ts[0], ts[-1]), z0, t_eval=ts, method="DOP853", rtol=1e-12,
                     atol=1e-12).y.reshape(4, 3, -1)


def test_age_structured_seir_matches_scipy(x64):
    ts = np.linspace(0.0, 150.0, 76)
    ref = _seir_groups_reference(ts)  # (C, G, T)
    traj = solve(seir_groups(), AGE_P, AGE_Y0, ts, **TIGHT)
    assert traj.ys.shape == (76, 4, 3) and traj["I"].shape == (3, 76)
    for k, c in enumerate("SEIR"):
        np.testing.assert_allclose(traj[c], ref[k], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traj.cumulative_infections,
                               ref[0].sum(0)[0] - ref[0].sum(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traj.ys.sum((1, 2)), AGE_N.sum(), rtol=1e-10)
    # the same from an array y0 of shape (C, G), and in an ensemble
    arr = np.stack([AGE_Y0[c] for c in "SEIR"])
    again = solve(seir_groups(), AGE_P, arr, ts, **TIGHT)
    np.testing.assert_allclose(again.ys, traj.ys, rtol=1e-12)
    ens = solve_ensemble(seir_groups(), {**AGE_P, "beta": np.array([0.3, 0.2])}, AGE_Y0, ts,
                         **TIGHT)
    assert ens.ys.shape == (2, 76, 4, 3) and ens["I"].shape == (2, 3, 76)
    np.testing.assert_allclose(ens.ys[0], traj.ys, rtol=1e-6, atol=1e-6)
    ref2 = _seir_groups_reference(ts, {**AGE_P, "beta": 0.2})
    np.testing.assert_allclose(ens["I"][1], ref2[2], rtol=1e-6, atol=1e-6)


def test_age_structured_r0_is_the_ngm_spectral_radius(x64):
    # Independent NGM: infected (E_1..3, I_1..3); F only from new infections into E.
    b, s, g, C, N = 0.3, 0.25, AGE_P["gamma"], AGE_C, AGE_N
    F = np.zeros((6, 6))
    F[:3, 3:] = b * N[:, None] * C / N[None, :]  # d(new_g)/dI_h = beta S_g C_gh / N_h
    V = np.zeros((6, 6))
    V[:3, :3] = s * np.eye(3)
    V[3:, :3] = -s * np.eye(3)
    V[3:, 3:] = np.diag(g)
    expected = np.max(np.abs(np.linalg.eigvals(F @ np.linalg.inv(V))))
    np.testing.assert_allclose(R0(seir_groups(), AGE_P), expected, rtol=1e-10)
    Fe, Ve = next_generation_matrices(seir_groups(), {k: jnp.asarray(v) for k, v in
                                                      AGE_P.items()})
    np.testing.assert_allclose(Fe, F, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Ve, V, rtol=1e-12, atol=1e-12)
    # an ensemble axis before the declared shapes
    r0s = R0(seir_groups(), {**AGE_P, "C": np.stack([AGE_C, 2 * AGE_C])})
    np.testing.assert_allclose(r0s, [expected, 2 * expected], rtol=1e-10)


def test_rank_one_contact_matrix_reduces_to_unstratified_seir(x64):
    ts = np.linspace(0.0, 120.0, 41)
    N = AGE_N
    C = np.tile(N / N.sum(), (3, 1))  # C_gh = N_h / N: everybody mixes alike
    p = {"beta": 0.5, "sigma": 0.25, "gamma": np.full(3, 0.2), "C": C, "N": N}
    I0 = np.array([2.0, 3.0, 1.0])
    y0 = {"S": N - I0, "E": np.zeros(3), "I": I0, "R": np.zeros(3)}
    strat = solve(seir_groups(), p, y0, ts, **TIGHT)
    flat = solve(SEIR(), {"beta": 0.5, "sigma": 0.25, "gamma": 0.2, "N": N.sum()},
                 {"S": N.sum() - I0.sum(), "E": 0.0, "I": I0.sum(), "R": 0.0}, ts, **TIGHT)
    for c in "SEIR":
        np.testing.assert_allclose(strat[c].sum(0), flat[c], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(R0(seir_groups(), p), 0.5 / 0.2, rtol=1e-10)
    # epinn.stratify builds the same model from the unstratified definition
    aged = stratify(SEIR(), 3)
    q = {"beta": 0.5, "sigma": 0.25, "gamma": 0.2, "C": C, "N": N}
    via = solve(aged, q, y0, ts, **TIGHT)
    np.testing.assert_allclose(via.ys, strat.ys, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(R0(aged, q), 0.5 / 0.2, rtol=1e-10)


# -- host-vector ----------------------------------------------------------------------


def test_host_vector_r0_closed_form(x64):
    a, b, c, g, mu, Nh, Nv = (HV_P[k] for k in ("a", "b", "c", "gamma", "mu_v", "Nh", "Nv"))
    ross_macdonald = a**2 * b * c * Nv / (Nh * g * mu)  # host -> host, two hops
    np.testing.assert_allclose(R0(host_vector_model(), HV_P, hops=2), ross_macdonald,
                               rtol=1e-10)
    np.testing.assert_allclose(R0(host_vector_model(), HV_P), np.sqrt(ross_macdonald),
                               rtol=1e-10)


def test_host_vector_solution_matches_scipy(x64):
    """A model whose rates are not homogeneous in (y, N): integrated at counts."""
    ts = np.linspace(0.0, 200.0, 51)
    p = HV_P
    y0 = {"Sh": 999.0, "Ih": 1.0, "Rh": 0.0, "Sv": 3000.0, "Iv": 0.0}

    def rhs(t, z):
        Sh, Ih, Rh, Sv, Iv, cum = z
        nh = p["a"] * p["b"] * Sh * Iv / p["Nh"]
        nv = p["a"] * p["c"] * Sv * Ih / p["Nh"]
        return [-nh, nh - p["gamma"] * Ih, p["gamma"] * Ih,
                p["mu_v"] * Iv - nv, nv - p["mu_v"] * Iv, nh + nv]

    ref = solve_ivp(rhs, (0, 200), [999.0, 1.0, 0.0, 3000.0, 0.0, 0.0], t_eval=ts,
                    method="DOP853", rtol=1e-12, atol=1e-12).y
    traj = solve(host_vector_model(), p, y0, ts, **TIGHT)
    np.testing.assert_allclose(traj.ys.T, ref[:5], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(traj.cumulative_infections, ref[5], rtol=1e-6, atol=1e-5)


def test_non_homogeneous_import_flow_matches_scipy(x64):
    """A constant import of infections (people per day) does not scale with N."""
    m = Model(("S", "I", "R"), ("beta", "gamma", "iota"),
              [infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
               flow("I", "R", lambda t, y, p: p.gamma * y.I),
               flow(None, "I", lambda t, y, p: p.iota, name="imports")])
    assert not m.structure.homogeneous and not m.conserved
    p = {"beta": 0.3, "gamma": 0.2, "iota": 2.0, "N": 5000.0}
    ts = np.linspace(0.0, 60.0, 31)

    def rhs(t, z):
        S, I, R = z
        return [-0.3 * S * I / 5000.0, 0.3 * S * I / 5000.0 - 0.2 * I + 2.0, 0.2 * I]

    ref = solve_ivp(rhs, (0, 60), [5000.0, 0.0, 0.0], t_eval=ts, method="DOP853",
                    rtol=1e-12, atol=1e-12).y
    traj = solve(m, p, {"S": 5000.0, "I": 0.0, "R": 0.0}, ts, **TIGHT)
    np.testing.assert_allclose(traj.ys.T, ref, rtol=1e-6, atol=1e-6)


# -- differentiation and transformations -----------------------------------------------


@pytest.mark.slow  # reverse mode through diffrax in float64: ~30-60 s
def test_custom_model_gradients_match_finite_differences(x64):
    ts = jnp.linspace(0.0, 40.0, 9)

    def loss(theta):
        b, g, nu = theta
        traj = solve(sirv_model(), {"beta": b, "gamma": g, "nu": nu, "N": 1000.0}, SIRV_Y0,
                     ts, **TIGHT)
        return jnp.sum(incidence(traj) ** 2) / 1e4

    theta = jnp.array([0.5, 0.2, 0.01])
    fd = central_difference(lambda x: float(loss(jnp.asarray(x))), np.asarray(theta))
    np.testing.assert_allclose(jax.grad(loss)(theta), fd, rtol=1e-5)
    import diffrax

    def loss_fwd(theta):
        b, g, nu = theta
        traj = solve(sirv_model(), {"beta": b, "gamma": g, "nu": nu, "N": 1000.0}, SIRV_Y0,
                     ts, adjoint=diffrax.ForwardMode(), **TIGHT)
        return jnp.sum(incidence(traj) ** 2) / 1e4

    np.testing.assert_allclose(jax.jacfwd(loss_fwd)(theta), fd, rtol=1e-5)


@pytest.mark.slow  # reverse mode through diffrax in float64: ~30-60 s
def test_stratified_gradient_through_contact_matrix(x64):
    ts = jnp.linspace(0.0, 30.0, 7)

    def loss(c):
        traj = solve(seir_groups(), {**AGE_P, "C": c}, AGE_Y0, ts, **TIGHT)
        return jnp.sum(traj["I"][:, -1])

    g = jax.grad(loss)(jnp.asarray(AGE_C))
    fd = central_difference(lambda c: float(loss(jnp.asarray(c))), AGE_C)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    r0_grad = jax.grad(lambda c: R0(seir_groups(), {**AGE_P, "C": c}))(jnp.asarray(AGE_C))
    fd_r0 = central_difference(lambda c: float(R0(seir_groups(), {**AGE_P, "C": c})), AGE_C)
    np.testing.assert_allclose(r0_grad, fd_r0, rtol=1e-5, atol=1e-8)


def test_jit_and_vmap_through_custom_models():
    ts = jnp.linspace(0.0, 50.0, 11)

    @jax.jit
    def final_v(nu):
        return solve(sirv_model(), {**SIRV_P, "nu": nu}, SIRV_Y0, ts)["V"][-1]

    nus = jnp.array([0.0, 0.01, 0.02])
    out = jax.vmap(final_v)(nus)
    ens = solve_ensemble(sirv_model(), {**SIRV_P, "nu": nus}, SIRV_Y0, ts)
    np.testing.assert_allclose(out, ens["V"][:, -1], rtol=1e-4, atol=1e-3)
    assert abs(out[0]) < 1e-3 and out[2] > out[1] > 1.0  # V is derived: roundoff only


def test_effective_reproduction_number_of_custom_models():
    ts = jnp.linspace(0.0, 60.0, 13)
    traj = solve(sirv_model(), SIRV_P, SIRV_Y0, ts)
    rt = effective_reproduction_number(sirv_model(), SIRV_P, traj)
    np.testing.assert_allclose(rt, 2.5 * traj["S"] / 1000.0, rtol=1e-5)
    strat = solve(seir_groups(), AGE_P, AGE_Y0, ts)
    rt = effective_reproduction_number(seir_groups(), AGE_P, strat)
    assert rt.shape == (13,)
    S0 = AGE_Y0["S"]  # independent: the NGM with the initial susceptibles
    F = np.zeros((6, 6))
    F[:3, 3:] = 0.3 * S0[:, None] * AGE_C / AGE_N[None, :]
    V = np.zeros((6, 6))
    V[:3, :3], V[3:, :3], V[3:, 3:] = 0.25 * np.eye(3), -0.25 * np.eye(3), np.diag(AGE_P["gamma"])
    expected = np.max(np.abs(np.linalg.eigvals(F @ np.linalg.inv(V))))
    np.testing.assert_allclose(rt[0], expected, rtol=1e-5)
    assert rt[-1] < rt[0]


def test_top_level_names():
    for name in ("Model", "flow", "infection", "stratify"):
        assert hasattr(epinn, name)


@pytest.mark.slow  # a compiled Poisson fit: ~40 s
def test_sirv_fit_recovers_its_parameters():
    """120 days of Poisson incidence in 10 000 people: each truth inside its 95% interval."""
    import jax.random as jr

    town = {**SIRV_P, "N": 10_000.0}
    y0 = {"S": 9_990.0, "I": 10.0, "R": 0.0, "V": 0.0}
    ts = jnp.arange(0.0, 121.0)
    counts = jr.poisson(jr.PRNGKey(0), incidence(solve(sirv_model(), town, y0, ts)))
    fit = epinn.fit_parameters(sirv_model(), ts[1:], {"incidence": counts.astype(float)},
                               y0=y0, t0=0.0, loss="poisson", free=("beta", "gamma", "nu"),
                               init={"beta": 0.3, "gamma": 0.1, "nu": 0.02, "N": 10_000.0})
    assert fit.converged
    for k in ("beta", "gamma", "nu"):
        lo, hi = fit.intervals[k]
        assert lo < town[k] < hi, (k, fit.params[k], (lo, hi))
    # the vaccination counts are an observable too (read off V: its only inflow)
    assert sirv_model().count_rule("vaccination") == ("target", "V")


def test_sensitivities_of_a_non_homogeneous_model(x64):
    """The forward-sensitivity solve (used by the fits) against jax.jacfwd through diffrax,
    for a model whose rates are evaluated at counts (a constant import)."""
    import diffrax

    from epinn.compartmental._integrate import _integrate_sensitivities, _make_config

    m = Model(("S", "I", "R"), ("beta", "gamma", "iota"),
              [infection("S", "I", lambda t, y, p: p.beta * y.S * y.I / p.N),
               flow("I", "R", lambda t, y, p: p.gamma * y.I),
               flow(None, "I", lambda t, y, p: p.iota, name="imports")])
    ts = jnp.linspace(0.0, 30.0, 7)
    N = 5000.0
    y0 = jnp.array([4990.0, 10.0, 0.0])

    def direct(theta):
        p = {"beta": theta[0], "gamma": theta[1], "iota": theta[2], "N": N}
        t = solve(m, p, y0, ts, adjoint=diffrax.ForwardMode(), **TIGHT)
        return t.ys / N

    theta = jnp.array([0.4, 0.2, 3.0])
    J = jax.jacfwd(direct)(theta)  # (T, C, P)
    rates = {"beta": theta[0], "gamma": theta[1], "iota": theta[2], "N": jnp.asarray(N)}
    d_rates = {k: jnp.eye(3)[i] if i < 3 else jnp.zeros(3)
               for i, k in enumerate(("beta", "gamma", "iota", "N"))}
    cfg = _make_config((None, 1e-10, 1e-12, None, 16384, None, True))
    (xs, _, ok, _), (d_xs, _) = _integrate_sensitivities(m, rates, y0 / N, ts, cfg, d_rates,
                                                         jnp.zeros((3, 3)))
    assert bool(ok)
    np.testing.assert_allclose(xs, direct(theta), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(jnp.moveaxis(d_xs, 0, -1), J, rtol=1e-6, atol=1e-9)


def test_stratified_ensemble_in_several_sorted_chunks():
    """Chunks sorted by growth rate (declared-shape parameters broadcast per member)."""
    ts = jnp.linspace(0.0, 60.0, 7)
    betas = jnp.array([0.1, 0.4, 0.2, 0.3, 0.25])
    Cs = jnp.stack([AGE_C * (1 + 0.1 * k) for k in range(5)])
    ens = solve_ensemble(seir_groups(), {**AGE_P, "beta": betas, "C": Cs}, AGE_Y0, ts,
                         chunk_size=2, mesh=False)
    for k in (0, 3):
        lone = solve(seir_groups(), {**AGE_P, "beta": float(betas[k]), "C": Cs[k]}, AGE_Y0, ts)
        np.testing.assert_allclose(ens.ys[k], lone.ys, rtol=1e-4, atol=1e-3)
