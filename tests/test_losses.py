import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.special import expit, log_softmax
from scipy.stats import norm

import epinn
from epinn.losses import (
    LOSSES,
    binary_cross_entropy,
    categorical_cross_entropy,
    gaussian_nll,
    get_loss,
    gradient_penalty,
    l1_penalty,
    mae,
    mse,
)
from epinn.models import MLP


def test_backprop_lecture_example():
    # f = (x + y) z at (-2, 5, -4): df/dx = df/dy = z = -4, df/dz = x + y = 3.
    grads = jax.grad(lambda x, y, z: (x + y) * z, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
    assert tuple(float(g) for g in grads) == (-4.0, -4.0, 3.0)


def test_mse_mae(key):
    p, t = jr.normal(key, (2, 7, 3))
    p_np, t_np = np.asarray(p, np.float64), np.asarray(t, np.float64)
    # float32 means of 21 terms: rtol 1e-6
    np.testing.assert_allclose(mse(p, t), np.mean((p_np - t_np) ** 2), rtol=1e-6)
    np.testing.assert_allclose(mae(p, t), np.mean(np.abs(p_np - t_np)), rtol=1e-6)
    with pytest.raises(ValueError, match="targets"):
        mse(jnp.ones((4, 1)), jnp.ones(4))  # would silently broadcast to (4, 4)
    with pytest.raises(ValueError, match="targets"):
        mae(jnp.ones(3), jnp.ones(4))


def test_bce_closed_form(key, x64):
    z = jr.normal(key, (20,)) * 3
    t = (jr.uniform(jr.fold_in(key, 1), (20,)) > 0.5).astype(float)
    p = expit(np.asarray(z))
    ref = -np.mean(t * np.log(p) + (1 - t) * np.log1p(-p))
    np.testing.assert_allclose(binary_cross_entropy(jnp.asarray(p), t), ref, rtol=1e-12)
    np.testing.assert_allclose(binary_cross_entropy(z, t, from_logits=True), ref, rtol=1e-12)


def test_bce_stable():
    z = jnp.array([100.0, -100.0, 100.0, -100.0])
    t = jnp.array([1.0, 0.0, 0.0, 1.0])
    # exact per-element losses: log(1 + e^-100) ~ 3.7e-44 (two right), 100 (two wrong)
    np.testing.assert_allclose(binary_cross_entropy(z, t, from_logits=True), 50.0, rtol=1e-6)
    np.testing.assert_allclose(
        binary_cross_entropy(z[:2], t[:2], from_logits=True), 0.0, atol=1e-30
    )
    g = jax.grad(lambda z: binary_cross_entropy(z, t, from_logits=True))(z)
    assert np.all(np.isfinite(g))
    # probabilities exactly 0 and 1: right answers ~0, wrong answers -log(eps) finite
    p = jnp.array([1.0, 0.0, 1.0, 0.0])
    t = jnp.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(binary_cross_entropy(p[:2], t[:2]), 0.0, atol=1e-6)
    wrong = binary_cross_entropy(p, t, eps=1e-7)
    np.testing.assert_allclose(wrong, -np.log(1e-7) / 2, rtol=1e-5)
    assert np.isfinite(jax.grad(lambda p: binary_cross_entropy(p, t))(p)).all()
    with pytest.raises(ValueError, match="targets"):
        binary_cross_entropy(jnp.ones((3, 1)), jnp.ones(3))


def test_cce_closed_form(key, x64):
    logits = np.asarray(jr.normal(key, (6, 4))) * 2
    labels = np.array([0, 3, 1, 2, 2, 0])
    onehot = np.eye(4)[labels]
    ref = -np.mean(log_softmax(logits, axis=-1)[np.arange(6), labels])
    probs = np.exp(log_softmax(logits, axis=-1))
    for preds, kw in [(logits, {"from_logits": True}), (probs, {})]:
        for targets in (onehot, labels):
            out = categorical_cross_entropy(jnp.asarray(preds), jnp.asarray(targets), **kw)
            np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_cce_onehot_equals_int_labels_and_batch_dims(key):
    logits = jr.normal(key, (3, 5, 4)) * 4
    labels = jr.randint(jr.fold_in(key, 1), (3, 5), 0, 4)
    onehot = jax.nn.one_hot(labels, 4)
    for preds, kw in [(logits, {"from_logits": True}), (jax.nn.softmax(logits), {})]:
        a = categorical_cross_entropy(preds, onehot, **kw)
        b = categorical_cross_entropy(preds, labels, **kw)
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_cce_stable():
    logits = jnp.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0]])
    # correct class: loss log(1 + e^-100 + e^-100) ~ 0; wrong class: ~ 200
    np.testing.assert_allclose(
        categorical_cross_entropy(logits, jnp.array([0, 1]), from_logits=True), 0.0, atol=1e-6
    )
    np.testing.assert_allclose(
        categorical_cross_entropy(logits, jnp.array([1, 0]), from_logits=True), 200.0, rtol=1e-6
    )
    p = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    out = categorical_cross_entropy(p, jnp.array([1, 1]))  # one probability exactly 0
    np.testing.assert_allclose(out, -np.log(1e-7) / 2, rtol=1e-5)


def test_cce_bad_targets():
    with pytest.raises(ValueError, match="targets"):
        categorical_cross_entropy(jnp.ones((4, 3)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="targets"):
        categorical_cross_entropy(jnp.ones((4, 3)), jnp.ones(4))  # float labels


def test_gaussian_nll(key, x64):
    k1, k2, k3 = jr.split(key, 3)
    mean, log_var = jr.normal(k1, (2, 10, 3))
    y = jr.normal(k2, (10, 3))
    ref = -np.mean(norm.logpdf(y, loc=mean, scale=np.exp(0.5 * log_var)))
    out = gaussian_nll(jnp.concatenate([mean, log_var], axis=-1), y)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # with unit variance it is mse / 2 + log(2 pi) / 2
    pred = jnp.concatenate([mean, jnp.zeros_like(mean)], axis=-1)
    np.testing.assert_allclose(
        gaussian_nll(pred, y), mse(mean, y) / 2 + np.log(2 * np.pi) / 2, rtol=1e-12
    )
    with pytest.raises(ValueError, match="targets"):
        gaussian_nll(jnp.ones((10, 3)), y)


def _params(key):
    return MLP((5, 3, 2)).init(key, jnp.ones((1, 4)))


def test_l1_penalty_ignores_biases(key):
    params = _params(key)
    kernels = [params["params"][f"Dense_{i}"]["kernel"] for i in range(3)]
    ref = 0.1 * sum(np.abs(np.asarray(k)).sum() for k in kernels)
    np.testing.assert_allclose(l1_penalty(params, 0.1), ref, rtol=1e-6)
    shifted = jax.tree_util.tree_map_with_path(
        lambda path, w: w + 7.0 if path[-1].key == "bias" else w, params
    )
    assert float(l1_penalty(shifted, 0.1)) == float(l1_penalty(params, 0.1))
    with pytest.raises(ValueError, match="params"):
        l1_penalty({"w": jnp.ones(3)}, 0.1)
    with pytest.raises(ValueError, match="lam"):
        l1_penalty(params, -1.0)


def test_gradient_penalty_against_loop(key):
    model = MLP((6, 6, 2), activation="tanh")
    params = model.init(key, jnp.ones((1, 3)))
    x = jr.normal(jr.fold_in(key, 1), (5, 3))
    grad_one = jax.jit(jax.grad(lambda p, x_i: jnp.sum(model.apply(p, x_i))))
    norms = []
    for i in range(5):  # one jax.grad per sample, no vmap
        g = grad_one(params, x[i : i + 1])
        norms.append(sum(float(jnp.sum(leaf**2)) for leaf in jax.tree_util.tree_leaves(g)))
    penalty = jax.jit(functools.partial(gradient_penalty, model.apply))  # eager vmap is slow
    out = penalty(params, x, 0.3)
    np.testing.assert_allclose(out, 0.3 * np.mean(norms), rtol=1e-5)  # float32 reductions
    # usable as a training term: differentiable w.r.t. params (second order)
    grads = jax.jit(jax.grad(penalty))(params, x, 1.0)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    with pytest.raises(ValueError, match="lam"):
        gradient_penalty(model.apply, params, x, -0.1)


def test_losses_are_differentiable(key):
    p, t = jr.uniform(key, (2, 8))
    for name in ["mse", "mae", "bce"]:
        g = jax.jit(jax.grad(get_loss(name)))(p, t)
        assert g.shape == p.shape and np.isfinite(g).all()
    # d mse / d p = 2 (p - t) / n
    np.testing.assert_allclose(jax.grad(mse)(p, t), 2 * (p - t) / 8, rtol=1e-6)


def test_get_loss():
    assert get_loss("BCE") is binary_cross_entropy
    assert get_loss("cce") is categorical_cross_entropy
    assert get_loss("gaussian_nll") is gaussian_nll
    assert get_loss(mae) is mae
    assert {"mse", "mae", "binary_cross_entropy", "categorical_cross_entropy", "gaussian_nll",
            "bce", "cce"} == set(LOSSES)
    with pytest.raises(ValueError, match="mse") as err:
        get_loss("rmse")
    assert "categorical_cross_entropy" in str(err.value)
    with pytest.raises(TypeError, match="name_or_callable"):
        get_loss(None)
    assert epinn.get_loss is get_loss and epinn.mse is mse


def test_cross_entropies_reject_concrete_targets_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_cross_entropy(jnp.array([0.5]), jnp.array([2.0]))
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
        categorical_cross_entropy(jnp.full((2, 3), 1 / 3), jnp.array([0, 7]))
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
        categorical_cross_entropy(jnp.zeros((2, 3)), jnp.array([-1, 0]), from_logits=True)
    # Under jit the values are unknown: no check, the loss is computed as before.
    assert np.isfinite(jax.jit(binary_cross_entropy)(jnp.array([0.5]), jnp.array([1.0])))


def test_bad_inputs_named_before_compilation():
    """Unknown names suggest the closest; unconvertible inputs name their argument."""
    from tests.helpers import count_compilations

    jnp.zeros(1) + 1  # warm up eager ops
    y, p2, k2 = jnp.ones((4, 1)), jnp.ones((4, 2)), {"kernel": jnp.ones(2)}
    cases = [
        (lambda: get_loss("binary_crossentropy"), ValueError,
         "did you mean 'binary_cross_entropy'"),
        (lambda: mse("abc", y), TypeError, "`predictions`"),
        (lambda: mae(y, [["a"]] * 4), TypeError, "`targets`"),
        (lambda: gaussian_nll(None, y), TypeError, "`predictions`"),
        (lambda: categorical_cross_entropy(p2, "x"), TypeError, "`targets`"),
        (lambda: l1_penalty(k2, "0.1"), TypeError, "`lam`"),
        (lambda: l1_penalty(k2, float("nan")), ValueError, "`lam`"),
        (lambda: l1_penalty(k2, -1), ValueError, "`lam`"),
        (lambda: gradient_penalty(lambda p, x: x, {}, "abc", 1.0), TypeError, "`x`"),
        (lambda: gradient_penalty(lambda p, x: x, {}, y, [1.0, 2.0]), TypeError, "`lam`"),
    ]
    for call, err, match in cases:
        with count_compilations() as c, pytest.raises(err, match=match):
            call()
        assert c.count == 0, match
    assert float(l1_penalty({"kernel": jnp.ones(2)}, np.float32(0.5))) == 1.0
