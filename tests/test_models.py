import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
from epinn.activations import smelu
from epinn.models import MLP
from tests.helpers import count_compilations, dot_precisions


@pytest.mark.parametrize(
    "features, x_shape, out_shape",
    [((1,), (7, 3), (7, 1)), ((16, 16, 4), (7, 3), (7, 4)), ((8, 2), (3,), (2,))],
)
def test_output_shapes_and_param_shapes(key, features, x_shape, out_shape):
    model = MLP(features)
    params = model.init(key, jnp.ones(x_shape))
    assert model.apply(params, jnp.ones(x_shape)).shape == out_shape
    sizes = (x_shape[-1], *features)
    for i in range(len(features)):
        layer = params["params"][f"Dense_{i}"]
        assert layer["kernel"].shape == (sizes[i], sizes[i + 1])
        assert layer["bias"].shape == (sizes[i + 1],)


def test_forward_matches_manual(key):
    model = MLP((5, 2), activation="smelu", activation_kwargs={"beta": 0.5})
    x = jr.normal(key, (4, 3))
    params = model.init(key, x)
    p = params["params"]
    hidden = smelu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], beta=0.5)
    expected = hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output_activation", ["sigmoid", "softmax", jnp.exp])
def test_output_activation(key, output_activation):
    model = MLP((4, 3), output_activation=output_activation)
    x = 10 * jr.normal(key, (6, 2))
    params = model.init(key, x)
    out = model.apply(params, x)
    logits = MLP((4, 3)).apply(params, x)  # same parameter tree, linear output
    fn = epinn.get_activation(output_activation)
    np.testing.assert_allclose(out, fn(logits), rtol=1e-6)
    if output_activation == "softmax":
        np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-6)


def test_same_key_bit_identical(key):
    x = jnp.ones((2, 3))
    a = MLP((8, 8, 1)).init(key, x)
    b = MLP((8, 8, 1)).init(key, x)
    for la, lb in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(la, lb)
    c = MLP((8, 8, 1)).init(jr.fold_in(key, 1), x)
    assert not np.array_equal(a["params"]["Dense_0"]["kernel"], c["params"]["Dense_0"]["kernel"])


def test_jit_vmap_grad(key):
    model = MLP((8, 1), activation="tanh")
    x = jr.normal(key, (10, 3))
    params = model.init(key, x)
    out = model.apply(params, x)
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), out, rtol=1e-6, atol=1e-7)
    per_sample = jax.vmap(model.apply, in_axes=(None, 0))(params, x)  # unbatched inputs (3,)
    np.testing.assert_allclose(per_sample, out, rtol=1e-6, atol=1e-7)

    # gradient w.r.t. the output bias of sum(output) is the batch size
    loss = lambda p: jnp.sum(model.apply(p, x))  # noqa: E731
    grads = jax.jit(jax.grad(loss))(params)
    np.testing.assert_allclose(grads["params"]["Dense_1"]["bias"], [10.0], rtol=1e-6)

    # vmap over an ensemble of parameter sets
    keys = jr.split(key, 4)
    ensemble = jax.vmap(lambda k: model.init(k, x))(keys)
    outs = jax.vmap(model.apply, in_axes=(0, None))(ensemble, x)
    assert outs.shape == (4, 10, 1)
    np.testing.assert_allclose(outs[2], model.apply(model.init(keys[2], x), x), rtol=1e-6)


def test_dropout(key):
    model = MLP((64, 1), dropout_rate=0.5)
    x = jnp.ones((4, 3))
    params = model.init(key, x)
    eval_out = model.apply(params, x)
    np.testing.assert_array_equal(model.apply(params, x, train=False), eval_out)
    train_a = model.apply(params, x, train=True, rngs={"dropout": jr.PRNGKey(1)})
    train_b = model.apply(params, x, train=True, rngs={"dropout": jr.PRNGKey(1)})
    train_c = model.apply(params, x, train=True, rngs={"dropout": jr.PRNGKey(2)})
    np.testing.assert_array_equal(train_a, train_b)
    assert not np.allclose(train_a, eval_out) and not np.allclose(train_a, train_c)
    with pytest.raises(Exception, match="dropout"):
        model.apply(params, x, train=True)


def test_hashable_fields():
    model = MLP([4, 1], activation="smelu", activation_kwargs={"beta": 2.0})
    assert model.features == (4, 1)
    assert hash(model) == hash(MLP((4, 1), activation="smelu", activation_kwargs={"beta": 2.0}))


@pytest.mark.parametrize("features", [(), [0, 1], (4, -1), (4.0, 1), "41", 5, None, (True, 1)])
def test_bad_features(features):
    with pytest.raises(ValueError, match="features"):
        MLP(features)


def test_bad_fields():
    with pytest.raises(ValueError, match="precision.*'ultra'"):
        MLP((4, 1), precision="ultra")
    with pytest.raises(ValueError, match="dropout_rate"):
        MLP((4, 1), dropout_rate=1.0)
    with pytest.raises(ValueError, match="relu"):
        MLP((4, 1), activation="rellu")
    with pytest.raises(ValueError, match="output_activation"):
        MLP((4, 1), output_activation="softplusss")
    assert epinn.MLP is MLP


def test_bad_fields_are_named_before_any_compilation():
    """Each bad field is blamed by its own name, with the closest valid name suggested."""
    jnp.zeros(1) + 1  # warm up eager ops
    cases = [
        (dict(output_activation="nope"), ValueError, r"`output_activation`='nope'.*'linear'"),
        (dict(output_activation="sigmod"), ValueError,
         r"`output_activation`.*did you mean 'sigmoid'"),
        (dict(activation="tahn"), ValueError, r"`activation`.*did you mean 'tanh'"),
        (dict(activation=3), TypeError, "`activation` must be an activation name"),
        (dict(output_activation=None), TypeError, "`output_activation`"),
        (dict(activation="smelu", activation_kwargs={"gamma": 1.0}), TypeError,
         "activation_kwargs"),
        (dict(activation="smelu", activation_kwargs={"beta": "2"}), TypeError,
         "`beta` \\(in `activation_kwargs`\\)"),
        (dict(activation_kwargs=[("beta", 2.0)]), TypeError, "activation_kwargs"),
        (dict(dropout_rate="0.1"), TypeError, "dropout_rate"),
        (dict(dropout_rate=-0.1), ValueError, "dropout_rate"),
    ]
    for kwargs, err, match in cases:
        with count_compilations() as c, pytest.raises(err, match=match):
            MLP((4, 1), **kwargs)
        assert c.count == 0, kwargs
    # numpy integer layer sizes are valid sizes.
    assert MLP((np.int64(4), np.int32(1))).features == (4, 1)


def test_forecaster_fields_named():
    for kwargs, err, match in [
        (dict(cell="lstn"), ValueError, "`cell`.*did you mean 'lstm'"),
        (dict(cell=None), ValueError, "`cell`"),
        (dict(hidden="8"), ValueError, "`hidden`"),
        (dict(dropout_rate="0"), TypeError, "`dropout_rate`"),
        (dict(param_dtype="int32"), TypeError, "`param_dtype`"),
        (dict(param_dtype="nonsense"), TypeError, "`param_dtype`"),
    ]:
        with count_compilations() as c, pytest.raises(err, match=match):
            epinn.RNNForecaster(**kwargs)
        assert c.count == 0, kwargs
    assert epinn.RNNForecaster(hidden=np.int64(8), horizon=np.int32(2)).hidden == 8
    model = epinn.RNNForecaster(hidden=4, horizon=2)
    x = jnp.ones((2, 5, 1))
    params = jax.eval_shape(model.init, jr.PRNGKey(0), x)
    for args, err, match in [((x, "3"), ValueError, "`steps`"), ((x, 2.0), ValueError, "`steps`"),
                             (("abc", 3), TypeError, "`x`"), (([[["a"]]], 3), TypeError, "`x`")]:
        with count_compilations() as c, pytest.raises(err, match=match):
            epinn.rollout(model, params, *args)
        assert c.count == 0, match


def test_precision_reaches_every_matrix_product(key):
    # On GPUs JAX's default float32 matmul is TF32; `precision` must reach each Dense.
    x = jnp.ones((4, 3))
    for precision, expected in [(None, jax.lax.Precision.DEFAULT),
                                ("highest", jax.lax.Precision.HIGHEST)]:
        model = MLP((8, 8, 1), activation="tanh", precision=precision)
        params = model.init(key, x)
        found = dot_precisions(lambda p, x: model.apply(p, x), params, x)
        assert found == {(expected, expected)}, found
        grads = dot_precisions(jax.grad(lambda p: model.apply(p, x).sum()), params)
        assert grads == {(expected, expected)}, grads
