"""Tests of epinn.sharding and of the sharded paths of the batched functions.

One process sees one CPU device here, so the multi-device checks run in subprocesses with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (tests/sharding_worker.py), and the
multi-host check in two processes joined by ``jax.distributed.initialize``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import epinn
from epinn.sharding import (
    batch_sharding,
    device_mesh,
    pad_batch,
    replicated,
    resolve_mesh,
    shard_batch,
    shard_map_batch,
)

WORKER = Path(__file__).with_name("sharding_worker.py")
ROOT = WORKER.parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("XLA_FLAGS", None)
    # The workers test XLA's host (CPU) devices; on a GPU machine JAX would default to the GPU.
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run_worker(*checks: str, timeout: float = 600, options: tuple[str, ...] = ()) -> str:
    res = subprocess.run([sys.executable, str(WORKER), *options, *checks], env=_env(),
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    for c in checks:
        assert f"ok {c}" in res.stdout, res.stdout + res.stderr
    return res.stdout


# ---- XLA's CPU flags ---------------------------------------------------------------------


def test_cpu_flags_set_devices_and_loop_threshold_keeping_other_flags():
    from epinn.sharding import _cpu_flags

    key = "xla_cpu_small_while_loop_byte_threshold"
    old = (f"--xla_foo=1 --xla_force_host_platform_device_count=3 "
           f"--xla_backend_extra_options=a=1,{key}=5")
    assert _cpu_flags(old, 2, 64).split() == [
        "--xla_foo=1", "--xla_force_host_platform_device_count=2",
        f"--xla_backend_extra_options=a=1,{key}=64",
    ]
    # None leaves a threshold that is already there (and adds none).
    assert f"{key}=5" in _cpu_flags(old, 2, None)
    assert _cpu_flags("", 4, None) == "--xla_force_host_platform_device_count=4"


def test_loop_kernel_bytes_reads_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_extra_options="
                       "xla_cpu_small_while_loop_byte_threshold=1234")
    assert epinn.loop_kernel_bytes() == 1234
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert epinn.loop_kernel_bytes() is None


def test_configure_cpu_refuses_once_jax_has_started():
    jax.devices()  # the backend is up in this process
    before = os.environ.get("XLA_FLAGS")
    with pytest.raises(RuntimeError, match="before JAX starts"):
        epinn.configure_cpu(2)
    assert os.environ.get("XLA_FLAGS") == before


@pytest.mark.parametrize("kw", [dict(devices=0), dict(devices=True), dict(devices=1.5),
                                dict(loop_kernel_bytes=-1), dict(loop_kernel_bytes=2.0)])
def test_configure_cpu_bad_arguments(kw):
    with pytest.raises(ValueError, match="devices|loop_kernel_bytes"):
        epinn.configure_cpu(**kw)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's chunk sizes")
def test_default_chunk_size_follows_the_loop_kernels(monkeypatch):
    from epinn.compartmental.ensemble import _auto_chunk_size

    ts = jnp.linspace(0.0, 160.0, 161)
    key = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold="
    for flags, expected in [("", 1024), (key + str(32 * 2**20), 256),
                            (key + "1000", 1024), (key + "0", 1024)]:
        monkeypatch.setenv("XLA_FLAGS", flags)
        assert _auto_chunk_size(epinn.SIR(), ts, None) == expected, flags
    # a loop state too large for the threshold (many saved times) keeps 1024
    monkeypatch.setenv("XLA_FLAGS", key + str(2**20))
    assert _auto_chunk_size(epinn.SIR(), jnp.linspace(0.0, 160.0, 1601), None) == 1024


def test_configure_cpu_in_a_fresh_process():
    """Two devices and loops as single kernels; an ensemble still meets issue #3's 1e-5."""
    _run_worker("loop_kernels", options=("--configure-cpu",))


# ---- one device ------------------------------------------------------------------------


def test_device_mesh_defaults_to_all_devices():
    mesh = device_mesh()
    assert mesh.size == jax.device_count() and mesh.axis_names == ("batch",)
    assert device_mesh(1, axis_name="x").axis_names == ("x",)


@pytest.mark.parametrize("bad", [0, jax.device_count() + 1, [], ["cpu"]])
def test_device_mesh_rejects_bad_devices(bad):
    with pytest.raises(ValueError, match="devices"):
        device_mesh(bad)


def test_resolve_mesh():
    assert resolve_mesh(False) is None
    assert resolve_mesh(device_mesh(1)) is None  # one device: nothing to spread
    with pytest.raises(TypeError, match="mesh"):
        resolve_mesh("all")


def test_pad_batch_repeats_last_item():
    tree = {"a": jnp.arange(5.0), "b": jnp.ones((5, 2))}
    padded, n = pad_batch(tree, 4)
    assert n == 5 and padded["a"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert padded["b"].shape == (8, 2)
    same, n = pad_batch(tree, 5)
    assert same is tree and n == 5


@pytest.mark.parametrize("tree", [{"a": jnp.ones(3), "b": jnp.ones(4)}, jnp.ones(()), {}])
def test_pad_batch_rejects_bad_batches(tree):
    with pytest.raises(ValueError, match="leading"):
        pad_batch(tree, 2)


def test_pad_batch_rejects_bad_multiple():
    with pytest.raises(ValueError, match="multiple"):
        pad_batch(jnp.ones(3), 0)


def test_shard_batch_and_shardings_on_one_device():
    mesh = device_mesh()
    x = shard_batch(jnp.ones((4, 2)), mesh)
    assert x.sharding == batch_sharding(mesh)
    assert replicated(mesh).spec == jax.sharding.PartitionSpec()


def test_shard_map_batch_on_one_device_is_the_function():
    x = jnp.arange(6.0).reshape(3, 2)
    out = shard_map_batch(lambda a, s: a * s, x, shared=jnp.array(3.0))
    np.testing.assert_array_equal(out, 3.0 * x)
    with pytest.raises(ValueError, match="partitioner"):
        shard_map_batch(lambda a: a, x, partitioner="pmap")


def test_ensemble_mesh_argument_is_checked():
    with pytest.raises(TypeError, match="mesh"):
        epinn.solve_ensemble(epinn.SIR(), {"beta": 0.5, "gamma": 0.1, "N": 1.0},
                             jnp.array([0.99, 0.01, 0.0]), jnp.linspace(0, 10, 3),
                             mesh="gpu")


# ---- several devices (subprocesses) ------------------------------------------------------


def test_four_devices_ensemble_fit_and_simulation():
    """Sharded results equal one device's and really are spread over the 4 devices."""
    _run_worker("ensemble", "fit", "simulate")


@pytest.mark.slow
def test_four_devices_batch_of_fits():
    _run_worker("batch_fit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed(tmp_path):
    """The multi-host path: 2 processes x 2 devices, one global mesh, gathered results."""
    port, out = _free_port(), tmp_path / "ys.npy"
    env = {**_env(), "EPINN_WORKER_OUT": str(out)}
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), "--process", str(i), "--port",
                          str(port), "multiprocess"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            logs.append(stdout + stderr)
            if p.returncode != 0:  # the other would wait for it until its timeout
                break
    finally:  # a failed or hung process must not outlive the test
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    from tests.sharding_worker import _ensemble_inputs

    params, y0, ts = _ensemble_inputs(64)
    ref = epinn.solve_ensemble(epinn.SIR(), params, y0, ts, chunk_size=8)
    np.testing.assert_allclose(np.load(out), ref.ys, rtol=1e-6, atol=2e-3)


def test_bad_mesh_arguments_are_named():
    import epinn

    mesh = epinn.device_mesh()
    with pytest.raises(ValueError, match="devices"):
        epinn.device_mesh(1.5)
    with pytest.raises(TypeError, match="mesh"):
        epinn.map_blocks(lambda a: a, jnp.ones(4), mesh="x")
    with pytest.raises(TypeError, match="fn"):
        epinn.vmap_blocks(3, jnp.ones(4), mesh=mesh)
    for n_shared in (3, -1, 0.5):
        with pytest.raises(ValueError, match="n_shared"):
            epinn.map_blocks(lambda a: a, jnp.ones(4), mesh=mesh, n_shared=n_shared)
    with pytest.raises(ValueError, match="leading axis"):
        epinn.map_blocks(lambda a: a, jnp.ones(()), mesh=mesh)
    out = epinn.map_blocks(lambda a, b: a * b, jnp.ones(4), 2.0, mesh=mesh, n_shared=1)
    assert out.tolist() == [2.0] * 4
