"""Checks that need several XLA devices, run by tests/test_sharding.py in a subprocess.

The device count is fixed when JAX starts, so these checks cannot run in the pytest
process. Usage::

    python tests/sharding_worker.py CHECK [CHECK ...]            # 4 CPU devices
    python tests/sharding_worker.py --process I --port P CHECK   # one of 2 processes

Each check raises (non-zero exit) on failure and prints one ``ok <check>`` line.
"""

from __future__ import annotations

import argparse
import os
import sys


def _setup(devices: int) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"


def _spread(a, d: int) -> None:
    """``a`` really lives in d pieces on d devices."""
    shards = a.addressable_shards
    assert len({s.device for s in shards}) == d, a.sharding
    assert all(s.data.shape[0] == a.shape[0] // d for s in shards), [
        s.data.shape for s in shards
    ]


def _ensemble_inputs(m: int):
    import jax.numpy as jnp
    import jax.random as jr

    kb, kg = jr.split(jr.PRNGKey(0))
    params = {"beta": jr.uniform(kb, (m,), minval=0.2, maxval=1.0),
              "gamma": jr.uniform(kg, (m,), minval=0.05, maxval=0.4), "N": 1000.0}
    return params, jnp.array([999.0, 1.0, 0.0]), jnp.linspace(0.0, 100.0, 51)


def check_ensemble() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import epinn

    d = jax.device_count()
    for m in (64, 61):  # divisible by 4 devices, and padded
        params, y0, ts = _ensemble_inputs(m)
        kw = dict(chunk_size=8)
        one = epinn.solve_ensemble(epinn.SIR(), params, y0, ts, mesh=False, **kw)
        many = epinn.solve_ensemble(epinn.SIR(), params, y0, ts, **kw)  # all devices
        # Each device sorts and chunks its own block of members, so the chunks, and with
        # them the step sizes, depend on the device count: equal within the solver
        # tolerance rtol = 1e-6 (atol: R = N - S - I carries float32 roundoff of N = 1000).
        np.testing.assert_allclose(many.ys, one.ys, rtol=1e-5, atol=2e-3)
        # ... and block by block, the same solves as one device given that block (up to
        # XLA's roundoff, which may flip one step's acceptance).
        # (The members are padded with copies of the last one to whole blocks.)
        block, pad = -(-m // d), -m % d
        padded = {n: jnp.concatenate([params[n], jnp.repeat(params[n][-1:], pad)])
                  for n in ("beta", "gamma")}
        for k in range(0, m, block):
            part = {**params, **{n: v[k:k + block] for n, v in padded.items()}}
            ref_k = epinn.solve_ensemble(epinn.SIR(), part, y0, ts, mesh=False, **kw)
            n_k = min(block, m - k)
            np.testing.assert_allclose(many.ys[k:k + n_k], ref_k.ys[:n_k], rtol=1e-5, atol=2e-3)
            steps = np.abs(np.asarray(many.num_steps[k:k + n_k])
                           - np.asarray(ref_k.num_steps[:n_k]))
            assert steps.max() <= 2, steps
        if m % d == 0:
            _spread(many.ys, d)
        summ = epinn.ensemble_summary(epinn.SIR(), params, y0, ts, **kw)
        ref = np.asarray(one.ys, np.float64)
        np.testing.assert_allclose(summ.mean, ref.mean(0), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(summ.std, ref.std(0), rtol=1e-4, atol=1e-3)
        assert int(summ.count) == m

    # A time-varying rate (replicated to every device) and failure reporting.
    params, y0, ts = _ensemble_inputs(8)
    tv = {**params, "gamma": lambda t: 0.1 + 0.01 * jnp.sin(t)}
    a = epinn.solve_ensemble(epinn.SIR(), tv, y0, ts, mesh=False)
    b = epinn.solve_ensemble(epinn.SIR(), tv, y0, ts)
    np.testing.assert_allclose(b.ys, a.ys, rtol=1e-5, atol=2e-3)
    bad = epinn.solve_ensemble(epinn.SIR(), params, y0, ts, max_steps=2, throw=False)
    assert not bool(np.any(np.asarray(bad.success)))
    try:
        epinn.solve_ensemble(epinn.SIR(), params, y0, ts, max_steps=2)
    except RuntimeError as err:  # raised on the host after the sharded call
        assert "max_steps" in str(err) or "maximum number of" in str(err), err
    else:
        raise AssertionError("a failed sharded solve did not raise")

    # Reverse mode through the sharded solve (default adjoint: DirectAdjoint on a mesh).
    params, y0, ts = _ensemble_inputs(8)

    def loss(beta, mesh):
        p = {**params, "beta": beta}
        return epinn.solve_ensemble(epinn.SIR(), p, y0, ts, chunk_size=2, mesh=mesh)["I"].sum()

    g_one = jax.grad(loss)(params["beta"], False)
    g_many = jax.grad(loss)(params["beta"], None)
    # DirectAdjoint vs the default adjoint: the same discrete gradient up to float32
    # roundoff, relative to the largest component.
    np.testing.assert_allclose(g_many, g_one, rtol=1e-4, atol=1e-5 * float(np.abs(g_one).max()))


def check_fit() -> None:
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import epinn
    from epinn.training._epoch import _epoch, _epoch_inputs, _EpochConfig
    from epinn.training._inputs import _apply_fns
    from epinn.training._metrics import _resolve_loss
    from epinn.training._optimizers import _fit_optimizer

    d = jax.device_count()
    x = jr.normal(jr.PRNGKey(1), (128, 3))
    y = jnp.sin(x.sum(1, keepdims=True))
    model = epinn.MLP((16, 1), activation="tanh")
    p0 = model.init(jr.PRNGKey(0), x[:1])
    kw = dict(epochs=5, batch_size=32, key=jr.PRNGKey(2), verbose=0, learning_rate=1e-2)
    p1, h1 = epinn.fit(model, p0, x, y, mesh=False, **kw)
    p4, h4 = epinn.fit(model, p0, x, y, **kw)
    # Same updates; only the order of the gradient's float additions differs.
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1.train_loss, h4.train_loss, rtol=1e-5)
    leaf = jax.tree_util.tree_leaves(p4)[0]
    assert len(leaf.sharding.device_set) == d  # replicated over the mesh
    # The minibatches really are split: the compiled epoch sums gradients across devices.
    mesh = epinn.device_mesh()
    tx = _fit_optimizer("adam", 1e-2)
    cfg = _EpochConfig(_apply_fns(model), _resolve_loss("mse"), tx, None, (), 128, 32, False,
                       mesh)
    inputs = _epoch_inputs(jr.PRNGKey(2), np.int32(0), 128, 32)
    text = _epoch.lower(cfg, p0, tx.init(p0), x, y, None, None, *inputs)
    text = text.compile().as_text()
    assert "all-reduce" in text
    # Each device's share of a minibatch of 32: its hidden activations are 8 x 16.
    assert f"f32[{32 // d},16]" in text, text[:2000]
    # Full batch (one step per epoch, split over the devices).
    f1, e1 = epinn.fit(model, p0, x, y, mesh=False, **{**kw, "batch_size": None})
    f4, e4 = epinn.fit(model, p0, x, y, **{**kw, "batch_size": None})
    for a, b in zip(jax.tree_util.tree_leaves(f1), jax.tree_util.tree_leaves(f4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e1.train_loss, e4.train_loss, rtol=1e-5)
    # A last, smaller minibatch (130 = 4 x 32 + 2), computed whole on every device.
    xr = jr.normal(jr.PRNGKey(3), (130, 3))
    yr = jnp.sin(xr.sum(1, keepdims=True))
    q1, g1 = epinn.fit(model, p0, xr, yr, mesh=False, **kw)
    q4, g4 = epinn.fit(model, p0, xr, yr, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(q1), jax.tree_util.tree_leaves(q4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g1.train_loss, g4.train_loss, rtol=1e-5)
    # Dropout: each device draws its own masks (folded keys); still reproducible.
    drop = epinn.MLP((16, 1), activation="tanh", dropout_rate=0.2)
    r1, _ = epinn.fit(drop, p0, x, y, **kw)
    r2, _ = epinn.fit(drop, p0, x, y, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(r1), jax.tree_util.tree_leaves(r2)):
        np.testing.assert_array_equal(a, b)
        assert np.isfinite(a).all()


def check_simulate() -> None:
    import jax.random as jr
    import numpy as np

    from epinn.amortized import Prior, simulate_training_set

    kw = dict(prior=Prior(N=763, I0=1), block_size=16)
    ts = np.arange(1.0, 15.0)
    one = simulate_training_set(jr.PRNGKey(0), 70, ts, mesh=False, **kw)
    many = simulate_training_set(jr.PRNGKey(0), 70, ts, **kw)
    np.testing.assert_allclose(many.curves, one.curves, rtol=1e-5)
    np.testing.assert_allclose(many.params["beta"], one.params["beta"], rtol=1e-6)


def check_batch_fit() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import epinn

    counts = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4.0])
    rng = np.random.default_rng(0)
    data = np.clip(counts * rng.uniform(0.8, 1.2, (10, 1)) + rng.normal(0, 5, (10, 14)), 0,
                   None)
    kw = dict(y0={"S": 762, "I": 1, "R": 0}, init={"beta": 1.0, "gamma": 0.3, "N": 763},
              t0=0.0, batch_size=4)
    one = epinn.fit_parameters_batch(epinn.SIR(), np.arange(1.0, 15.0), {"I": data},
                                     mesh=False, **kw)
    many = epinn.fit_parameters_batch(epinn.SIR(), np.arange(1.0, 15.0), {"I": data}, **kw)
    stacked = epinn.fit_parameters_batch(epinn.SIR(), np.arange(1.0, 15.0), {"I": data},
                                         method="stacked", **kw)  # shard_map path
    assert stacked["converged"].all()
    for k in ("beta", "gamma"):
        np.testing.assert_allclose(stacked[k], one[k], rtol=1e-4)
    for k in ("beta", "gamma"):
        # Stacked fits: each device stacks its own block, so optima agree to ~1e-5.
        np.testing.assert_allclose(many[k], one[k], rtol=1e-4)
    assert many["converged"].all()


def check_multiprocess() -> None:
    """Run inside each of 2 processes: a global 4-device ensemble, gathered."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    import epinn

    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    params, y0, ts = _ensemble_inputs(64)
    traj = epinn.solve_ensemble(epinn.SIR(), params, y0, ts, chunk_size=8)
    assert len(traj.ys.sharding.device_set) == 4
    ys = multihost_utils.process_allgather(traj.ys, tiled=True)
    if jax.process_index() == 0:
        np.save(os.environ["EPINN_WORKER_OUT"], np.asarray(ys))


def check_loop_kernels() -> None:
    """Started by ``epinn.configure_cpu(2)``: two devices, loops as single kernels."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from scipy.integrate import solve_ivp

    import epinn
    from epinn.compartmental.ensemble import _auto_chunk_size
    from epinn.sharding import LOOP_KERNEL_BYTES

    assert jax.device_count() == 2, jax.devices()
    assert epinn.loop_kernel_bytes() == LOOP_KERNEL_BYTES, os.environ["XLA_FLAGS"]
    ts = jnp.linspace(0.0, 160.0, 161)
    assert _auto_chunk_size(epinn.SIR(), ts, None) == 256
    m = 600  # three chunks per device
    beta, gamma = np.linspace(0.1, 1.0, m), np.linspace(0.5, 0.05, m)
    params = {"beta": jnp.asarray(beta), "gamma": jnp.asarray(gamma), "N": 1.0}
    traj = epinn.solve_ensemble(epinn.SIR(), params, jnp.array([0.999, 0.001, 0.0]), ts,
                                rtol=1e-6, atol=1e-9)
    assert bool(np.all(traj.success))
    for k in range(0, m, 53):  # against scipy at rtol 1e-10, to 1e-5 (issue #3's target)
        def rhs(t, y, b=beta[k], g=gamma[k]):
            new = b * y[0] * y[1]
            return [-new, new - g * y[1], g * y[1]]

        ref = solve_ivp(rhs, (0.0, 160.0), [0.999, 0.001, 0.0], method="DOP853",
                        t_eval=np.asarray(ts, np.float64), rtol=1e-10, atol=1e-13).y.T
        np.testing.assert_allclose(np.asarray(traj.ys[k], np.float64), ref, rtol=0, atol=1e-5)


CHECKS = {
    "ensemble": check_ensemble,
    "fit": check_fit,
    "simulate": check_simulate,
    "batch_fit": check_batch_fit,
    "multiprocess": check_multiprocess,
    "loop_kernels": check_loop_kernels,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checks", nargs="+", choices=sorted(CHECKS))
    p.add_argument("--process", type=int, default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--configure-cpu", action="store_true",
                   help="start JAX with epinn.configure_cpu(2) instead of 4 plain devices")
    a = p.parse_args()
    if a.configure_cpu:
        import epinn

        epinn.configure_cpu(2)
    elif a.process is None:
        _setup(4)
    else:
        _setup(2)
        import jax

        jax.distributed.initialize(coordinator_address=f"localhost:{a.port}",
                                   num_processes=2, process_id=a.process)
    for name in a.checks:
        CHECKS[name]()
        print(f"ok {name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
