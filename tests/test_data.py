"""Tests for epinn.data: splits, scalers, minibatch indices."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import epinn
from epinn.data import (
    MinMaxScaler,
    Standardizer,
    batch_indices,
    minibatches,
    train_val_test_split,
)

# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5)])
@pytest.mark.parametrize("n", [10, 37, 1000])
def test_split_sizes_and_partition(key, fractions, n):
    x = jnp.arange(n, dtype=jnp.float32)
    y = 10 * jnp.arange(n)
    parts = train_val_test_split(x, y, fractions=fractions, key=key)
    assert len(parts) == len(fractions)
    sizes = [p[0].shape[0] for p in parts]
    assert sum(sizes) == n
    # Each part's size is within 1 of its share (rounding of the cumulative boundaries).
    for s, f in zip(sizes, fractions):
        assert abs(s - f * n) <= 1
    # Together the parts are a permutation of the input, and x and y stay paired.
    allx = np.concatenate([np.asarray(p[0]) for p in parts])
    np.testing.assert_array_equal(np.sort(allx), np.arange(n))
    for px, py in parts:
        np.testing.assert_array_equal(np.asarray(py), 10 * np.asarray(px).astype(int))


def test_split_shuffles_by_key_and_is_reproducible(key):
    x = jnp.arange(100)
    (a,), _, _ = train_val_test_split(x, key=key)
    (b,), _, _ = train_val_test_split(x, key=key)
    (c,), _, _ = train_val_test_split(x, key=jr.PRNGKey(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.arange(80))  # actually shuffled


def test_split_chronological_keeps_order():
    t = jnp.arange(20)
    (tr,), (va,), (te,) = train_val_test_split(t, fractions=(0.6, 0.2, 0.2), shuffle=False)
    np.testing.assert_array_equal(tr, np.arange(12))
    np.testing.assert_array_equal(va, np.arange(12, 16))
    np.testing.assert_array_equal(te, np.arange(16, 20))


def test_split_multidimensional_arrays(key):
    x = jnp.arange(50 * 3).reshape(50, 3)
    y = jnp.arange(50)
    (xt, yt), (xv, yv), (xs, ys) = train_val_test_split(x, y, key=key)
    assert xt.shape == (40, 3) and xv.shape == (5, 3) and xs.shape == (5, 3)
    np.testing.assert_array_equal(xt[:, 0] // 3, yt)


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1), (0.9, 0.2, -0.1), (0.5, 0.5, 0.1), (), (float("nan"), 1.0)]
)
def test_split_bad_fractions(key, fractions):
    with pytest.raises(ValueError, match="fractions"):
        train_val_test_split(jnp.arange(10), fractions=fractions, key=key)


def test_split_fraction_sum_tolerance(key):
    # 1e-7 off is accepted (floating-point sums), 1e-5 off is not.
    train_val_test_split(jnp.arange(10), fractions=(0.7, 0.2, 0.1 + 1e-7), key=key)
    with pytest.raises(ValueError, match="fractions"):
        train_val_test_split(jnp.arange(10), fractions=(0.7, 0.2, 0.1 + 1e-5), key=key)


def test_split_bad_arrays(key):
    with pytest.raises(ValueError, match="same length"):
        train_val_test_split(jnp.arange(10), jnp.arange(9), key=key)
    with pytest.raises(ValueError, match="non-empty"):
        train_val_test_split(jnp.zeros((0, 2)), key=key)
    with pytest.raises(ValueError, match="arrays"):
        train_val_test_split(key=key)
    with pytest.raises(ValueError, match="scalar"):
        train_val_test_split(jnp.float32(1.0), key=key)
    with pytest.raises(ValueError, match="key"):
        train_val_test_split(jnp.arange(10))


# ---------------------------------------------------------------------------- scalers


def test_standardizer_against_numpy(key):
    x = jr.normal(key, (200, 4)) * jnp.array([1.0, 10.0, 0.1, 3.0]) + jnp.array([5, -2, 0, 1])
    s = Standardizer.fit(x)
    xn = np.asarray(x, dtype=np.float64)
    # float32 statistics of 200 samples vs float64 numpy: relative error ~1e-6.
    np.testing.assert_allclose(s.mean, xn.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.scale, xn.std(0), rtol=1e-5)
    z = s.transform(x)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(z, 0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-6, atol=1e-5)


def test_standardizer_inverse_exact_x64(x64, key):
    x = jr.normal(key, (100, 3), dtype=jnp.float64) * 7.0 + 3.0
    s = Standardizer.fit(x)
    # (x - m) / s * s + m: two roundings each way, so a few ulp.
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x, rtol=1e-14, atol=1e-14)


def test_minmax_against_numpy(key):
    x = jr.uniform(key, (100, 3), minval=-4.0, maxval=9.0)
    s = MinMaxScaler.fit(x, feature_range=(-1.0, 2.0))
    z = np.asarray(s.transform(x))
    np.testing.assert_allclose(z.min(0), -1.0, atol=1e-6)
    np.testing.assert_allclose(z.max(0), 2.0, atol=1e-6)
    xn = np.asarray(x)
    expected = -1.0 + 3.0 * (xn - xn.min(0)) / (xn.max(0) - xn.min(0))
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [0.0, 0.1, 3.7, -1e4])
def test_constant_columns_no_division_by_zero(value):
    x = jnp.stack([jnp.linspace(0.0, 1.0, 33), jnp.full(33, value)], axis=1)
    for scaler in (Standardizer.fit(x), MinMaxScaler.fit(x)):
        z = scaler.transform(x)
        assert np.all(np.isfinite(z))
        # The constant column maps to a constant (0 for both scalers), to rounding.
        np.testing.assert_allclose(z[:, 1], z[0, 1], atol=1e-6)
        assert abs(float(z[0, 1])) < 1e-3
        np.testing.assert_allclose(scaler.inverse_transform(z)[:, 1], value, rtol=1e-6)


def test_scalers_are_pytrees_and_jittable(key):
    x = jr.normal(key, (50, 2))
    for scaler in (Standardizer.fit(x), MinMaxScaler.fit(x)):
        leaves = jax.tree_util.tree_leaves(scaler)
        assert all(isinstance(leaf, jax.Array) for leaf in leaves)
        out = jax.jit(lambda s, v: s.transform(v))(scaler, x)
        np.testing.assert_allclose(out, scaler.transform(x), rtol=1e-6)


def test_scaler_fit_under_jit(key):
    x = jr.normal(key, (30, 2)) * 3.0 + 1.0
    s_jit = jax.jit(Standardizer.fit)(x)
    s = Standardizer.fit(x)
    np.testing.assert_allclose(s_jit.mean, s.mean, rtol=1e-6)
    np.testing.assert_allclose(s_jit.scale, s.scale, rtol=1e-6)
    m_jit = jax.jit(MinMaxScaler.fit)(x)
    np.testing.assert_allclose(m_jit.data_range, MinMaxScaler.fit(x).data_range, rtol=1e-6)


def test_scaler_leading_axes(key):
    x = jr.normal(key, (10, 7, 3)) + jnp.arange(3.0)
    s = Standardizer.fit(x, axis=(0, 1))
    assert s.mean.shape == (3,)
    np.testing.assert_allclose(s.mean, np.asarray(x).reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        Standardizer.fit(x, axis=1)


def test_scaler_bad_input():
    with pytest.raises(ValueError, match="x"):
        Standardizer.fit(jnp.array([[1.0, jnp.nan]]))
    with pytest.raises(ValueError, match="x"):
        MinMaxScaler.fit(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="feature_range"):
        MinMaxScaler.fit(jnp.ones((3, 1)), feature_range=(1.0, 0.0))


# ------------------------------------------------------------------------ minibatches


@pytest.mark.parametrize("n,bs", [(10, 4), (12, 4), (7, 1), (5, 5)])
def test_batch_indices_partition(key, n, bs):
    full, rest = batch_indices(key, n, bs)
    assert full.shape == (n // bs, bs) and rest.shape == (n % bs,)
    allidx = np.concatenate([np.asarray(full).ravel(), np.asarray(rest)])
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


def test_batch_indices_jit_and_reshuffle(key):
    f = jax.jit(batch_indices, static_argnums=(1, 2))
    a, _ = f(jr.fold_in(key, 0), 20, 5)
    b, _ = f(jr.fold_in(key, 1), 20, 5)
    a2, _ = batch_indices(jr.fold_in(key, 0), 20, 5)
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)


def test_minibatches_drop_last(key):
    batches = list(minibatches(key, 10, 3))
    assert [b.shape[0] for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert [b.shape[0] for b in minibatches(key, 10, 3, drop_last=True)] == [3, 3, 3]
    assert [b.shape[0] for b in minibatches(key, 9, 3)] == [3, 3, 3]


@pytest.mark.parametrize("bs", [0, -1, 11])
def test_batch_size_out_of_range(key, bs):
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(key, 10, bs)
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(key, 10, bs)  # raises eagerly, before iteration


def test_batch_size_type(key):
    with pytest.raises(TypeError, match="batch_size"):
        batch_indices(key, 10, 2.5)
    with pytest.raises(ValueError, match="`n`"):
        batch_indices(key, 0, 1)


def test_exported_from_epinn():
    for name in ("train_val_test_split", "Standardizer", "MinMaxScaler", "minibatches"):
        assert getattr(epinn, name) is getattr(epinn.data, name)


def test_permutation_is_uniform(key):
    """All 4! orders equally likely: a chi-square test over 4800 shuffles."""
    from scipy.stats import chisquare

    from epinn.data._batches import _permutation

    perms = np.asarray(jax.jit(jax.vmap(lambda k: _permutation(k, 4)))(jr.split(key, 4800)))
    codes = perms @ np.array([64, 16, 4, 1])
    _, counts = np.unique(codes, return_counts=True)
    assert counts.size == 24 and counts.sum() == 4800
    # Deterministic keys, so this is a fixed outcome; p > 1e-3 means no detectable bias.
    assert chisquare(counts).pvalue > 1e-3


def test_permutation_large_n_multiple_rounds(key):
    from epinn.data._batches import _permutation

    n = 100_000  # 17 index bits, 15 random bits per round: 4 rounds
    perm = np.asarray(jax.jit(_permutation, static_argnums=1)(key, n))
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    # No memory of the input order: correlation ~ N(0, 1/n), so |r| < 5/sqrt(n).
    assert abs(np.corrcoef(perm, np.arange(n))[0, 1]) < 5 / np.sqrt(n)
    # Where the first 1000 elements land is uniform over the whole range (KS test).
    from scipy.stats import kstest

    assert kstest(perm[:1000] / n, "uniform").pvalue > 1e-3


def test_keys_and_scaler_shapes_are_checked():
    with pytest.raises(TypeError, match="key"):
        train_val_test_split(jnp.arange(10.0), key=0)
    with pytest.raises(TypeError, match="key"):
        next(epinn.minibatches(0, 10, 2))
    with pytest.raises(TypeError, match="key"):  # uint32, but not a threefry key's shape
        batch_indices(jnp.zeros(3, jnp.uint32), 10, 2)
    full, rest = batch_indices(jr.key(0), 10, 4)  # typed keys work as raw ones do
    assert sorted(np.concatenate([full.ravel(), rest]).tolist()) == list(range(10))
    raw = np.asarray(jr.PRNGKey(3))  # NumPy key data, as JAX itself accepts
    np.testing.assert_array_equal(batch_indices(raw, 10, 4)[0],
                                  batch_indices(jr.PRNGKey(3), 10, 4)[0])
    s = epinn.Standardizer.fit(jnp.ones((5, 2)))
    with pytest.raises(ValueError, match=r"fitted per-feature shape \(2,\)"):
        s.transform(jnp.ones((4, 3)))
    m = epinn.MinMaxScaler.fit(jnp.arange(10.0).reshape(5, 2))
    with pytest.raises(ValueError, match="`z`"):
        m.inverse_transform(jnp.ones(3))


def test_unconvertible_arguments_named_before_compilation(key):
    """float()/asarray of user input: each error names its argument; nothing compiles."""
    from epinn.data import (
        LogRatioScaler,
        chronological_split,
        inverse_log_transform,
        inverse_ratio_transform,
        log_transform,
        ratio_transform,
        sliding_windows,
    )
    from tests.helpers import count_compilations

    jnp.zeros(1) + 1  # warm up eager ops
    x, a9, o3, w, t = jnp.ones((6, 2)), jnp.arange(9.0), jnp.ones(3), jnp.ones((2, 3, 1)), \
        jnp.ones((2, 2))
    cases = [
        (lambda: train_val_test_split(x, fractions=("0.8", "0.2")), TypeError, "`fractions`"),
        (lambda: train_val_test_split(x, fractions="ab"), TypeError, "`fractions`"),
        (lambda: train_val_test_split(x, [["a", "b"]] * 6, fractions=(1.0,), shuffle=False),
         TypeError, r"`arrays\[1\]`"),
        (lambda: Standardizer.fit("abc"), TypeError, "`x`"),
        (lambda: Standardizer.fit(x, axis="0"), TypeError, "`axis`"),
        (lambda: MinMaxScaler.fit(x, feature_range=("a", 1)), ValueError, "`feature_range`"),
        (lambda: sliding_windows("abc", 2, 1), TypeError, "`series`"),
        (lambda: sliding_windows(a9, "3", 1), TypeError, "`input_len`"),
        (lambda: sliding_windows(a9, 3, 1.0), TypeError, "`horizon`"),
        (lambda: chronological_split(a9, (0.5, 0.5), context="1"), TypeError,
         "`context`"),
        (lambda: log_transform(o3, offset="1"), TypeError, "`offset`"),
        (lambda: log_transform(["a"]), TypeError, "`counts`"),
        (lambda: inverse_log_transform("z"), TypeError, "`z`"),
        (lambda: ratio_transform(o3, axis="0"), TypeError, "`axis`"),
        (lambda: inverse_ratio_transform(o3, initial="a"), TypeError, "`initial`"),
        (lambda: inverse_ratio_transform("r", initial=1.0), TypeError, "`ratios`"),
        (lambda: LogRatioScaler.fit(w, t, target_feature="0"), TypeError, "`target_feature`"),
        (lambda: LogRatioScaler.fit(w, t, offset=None),
         TypeError, "`offset`"),
    ]
    for call, err, match in cases:
        with count_compilations() as c, pytest.raises(err, match=match):
            call()
        assert c.count == 0, match
    # NumPy integers are valid sizes and axes.
    xw, yw = sliding_windows(jnp.arange(9.0), np.int64(3), np.int32(2), stride=np.int64(1))
    assert xw.shape == (5, 3, 1) and yw.shape == (5, 2)
    assert Standardizer.fit(x, axis=np.int64(0)).mean.shape == (2,)
