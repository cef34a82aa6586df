import jax
import jax.numpy as jnp
import numpy as np
import pytest

import epinn
from epinn.activations import (
    ACTIVATIONS,
    elu,
    get_activation,
    leaky_relu,
    linear,
    relu,
    sigmoid,
    smelu,
    softmax,
    tanh,
)

X = np.linspace(-5.0, 5.0, 41)


# Closed forms evaluated in numpy float64; float32 jax results agree to ~1e-6 relative.
@pytest.mark.parametrize(
    "fn, reference",
    [
        (sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x))),
        (tanh, np.tanh),
        (relu, lambda x: np.maximum(x, 0.0)),
        (leaky_relu, lambda x: np.where(x >= 0, x, 0.01 * x)),
        (elu, lambda x: np.where(x > 0, x, np.expm1(x))),
        (linear, lambda x: x),
    ],
)
def test_closed_forms(fn, reference):
    np.testing.assert_allclose(fn(jnp.asarray(X)), reference(X), rtol=1e-6, atol=1e-7)


def test_parameters_and_jax_nn():
    x = jnp.asarray(X)
    np.testing.assert_allclose(leaky_relu(x, 0.2), np.where(X >= 0, X, 0.2 * X), rtol=1e-6)
    np.testing.assert_allclose(elu(x, alpha=2.0), np.where(X > 0, X, 2 * np.expm1(X)), rtol=1e-6)
    for ours, theirs in [(sigmoid, jax.nn.sigmoid), (relu, jax.nn.relu), (tanh, jnp.tanh)]:
        np.testing.assert_array_equal(ours(x), theirs(x))


def test_softmax():
    x = np.array([[1.0, 2.0, 3.0], [-1000.0, 0.0, 1000.0]])
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(softmax(jnp.asarray(x)), e / e.sum(-1, keepdims=True), atol=1e-7)
    col = softmax(jnp.asarray(x[:1]), axis=0)  # a single row: each column normalises to 1
    np.testing.assert_allclose(col, np.ones((1, 3)))
    assert np.all(np.isfinite(softmax(jnp.asarray(x))))


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_smelu_branches(beta):
    x = np.array([-2 * beta, -beta, -0.5 * beta, 0.0, 0.5 * beta, beta, 2 * beta])
    expected = np.where(x <= -beta, 0.0, np.where(x >= beta, x, (x + beta) ** 2 / (4 * beta)))
    # hand values: quadratic region gives (beta/2)^2/(4 beta) = beta/16 at -beta/2, beta/4 at 0
    np.testing.assert_allclose(expected[2:5], [beta / 16, beta / 4, 9 * beta / 16])
    np.testing.assert_allclose(smelu(jnp.asarray(x), beta=beta), expected, rtol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_smelu_c1_at_joins(beta):
    f = lambda x: smelu(x, beta=beta)  # noqa: E731
    df = jax.grad(f)
    h = 1e-3
    for knot, (slope_left, slope_right) in [(-beta, (0.0, 0.0)), (beta, (1.0, 1.0))]:
        # value continuous: both sides tend to the same limit (difference is O(h))
        assert abs(float(f(knot - h)) - float(f(knot + h))) < 2 * h
        # derivative continuous: one-sided derivatives match the analytic slopes at the knot
        np.testing.assert_allclose(float(df(knot - h)), slope_left, atol=h / beta)
        np.testing.assert_allclose(float(df(knot + h)), slope_right, atol=h / beta)
        np.testing.assert_allclose(float(df(jnp.float32(knot))), slope_left, atol=1e-6)
    # the derivative inside is (x + beta) / (2 beta)
    np.testing.assert_allclose(float(df(0.0)), 0.5, rtol=1e-6)


def test_smelu_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        smelu(jnp.ones(3), beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        get_activation("smelu", beta=-1.0)(jnp.ones(3))


def test_smelu_jit_vmap():
    x = jnp.asarray(X)
    np.testing.assert_allclose(jax.jit(smelu, static_argnames="beta")(x, beta=2.0), smelu(x, 2.0))
    np.testing.assert_allclose(jax.vmap(smelu)(x), smelu(x))


def test_get_activation():
    assert get_activation("ReLU") is relu
    assert get_activation(jnp.sin) is jnp.sin
    f = get_activation("smelu", beta=2.0)
    np.testing.assert_allclose(f(jnp.asarray(X)), smelu(jnp.asarray(X), beta=2.0))
    g = get_activation("leaky_relu", negative_slope=0.3)
    assert float(g(-1.0)) == pytest.approx(-0.3)
    assert set(ACTIVATIONS) == {
        "sigmoid", "tanh", "relu", "leaky_relu", "elu", "smelu", "softmax", "linear"
    }
    assert epinn.get_activation is get_activation and epinn.smelu is smelu


def test_get_activation_errors():
    with pytest.raises(ValueError, match="smelu") as err:
        get_activation("swishh")
    assert "relu" in str(err.value) and "name_or_callable" in str(err.value)
    with pytest.raises(TypeError, match="name_or_callable"):
        get_activation(3)
    with pytest.raises(TypeError, match="gamma"):
        get_activation("elu", gamma=1.0)


def test_get_activation_rejects_bad_parameter_values():
    with pytest.raises(ValueError, match="negative_slope"):
        get_activation("leaky_relu", negative_slope=float("nan"))
    with pytest.raises(TypeError, match="beta"):
        get_activation("smelu", beta="2")


def test_bad_names_and_values_are_named_before_compilation():
    """Unknown names suggest the closest valid one; conversions name their argument."""
    from tests.helpers import count_compilations

    jnp.zeros(1) + 1  # warm up eager ops
    x = jnp.ones(3)
    cases = [
        (lambda: get_activation("sigmiod"), ValueError, "did you mean 'sigmoid'"),
        (lambda: get_activation("Tanhh"), ValueError, "did you mean 'tanh'"),
        (lambda: get_activation("zzz"), ValueError, r"valid names are \['elu'"),
        (lambda: smelu(x, beta="2"), TypeError, "`beta`"),
        (lambda: smelu(x, beta=[1.0, 2.0]), TypeError, "`beta`"),
        (lambda: smelu(x, beta=float("inf")), ValueError, "`beta`"),
        (lambda: get_activation("elu", alpha="1"), TypeError, "`alpha`"),
        (lambda: get_activation("relu", slope=1.0), TypeError, r"\*\*kwargs.*slope"),
    ]
    for call, err, match in cases:
        with count_compilations() as c, pytest.raises(err, match=match):
            call()
        assert c.count == 0, match
    assert float(smelu(jnp.array(3.0), beta=np.float32(1.0))) == 3.0
