"""Benchmark: epinn.fit against the same MLP trained in PyTorch (CPU, eager).

Problem: 100 000 samples, 8 inputs, MLP 8-64-64-64-1 (ReLU), MSE, Adam(1e-3), minibatches of
256 reshuffled each epoch, 5 epochs, float32. Both frameworks run in this process on the same
data; PyTorch uses ``torch.set_num_threads(cores)``.

Printed: samples/s for each (compilation excluded, reported separately for epinn), their
ratio, and the achieved GFLOP/s (``6 x parameters x samples / time``: forward 2, backward 4
FLOPs per parameter per sample) beside a measured float32 GEMM rate, the machine's practical
ceiling for this kind of work.

Run::

    pip install torch==2.13.0   # the CPU build
    python benchmarks/bench_mlp.py [--samples 100000] [--epochs 5] [--repeats 3]

Each framework is timed ``--repeats`` times, interleaved, and the best and median runs are
reported (on a shared machine the best run is the least disturbed). On a busy machine run
with ``OMP_WAIT_POLICY=PASSIVE``: PyTorch's OpenMP threads otherwise spin-wait and slow down
by an order of magnitude under contention, which would flatter epinn.

``--torch-device cuda`` runs PyTorch on the GPU beside JAX. On one NVIDIA H100 (jax 0.11.2,
torch 2.11.0+cu130, 2026-11-27): epinn 6.6 M samples/s, eager PyTorch 0.11 M (58x: at this
size PyTorch's per-operation kernel launches dominate, epinn runs each epoch as one program).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import epinn

FEATURES = (64, 64, 64, 1)


def make_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3] + 0.1 * rng.standard_normal((n, 1)))
    return x, y.astype(np.float32)


def n_params(d: int) -> int:
    sizes = (d, *FEATURES)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def epinn_run(x, y, epochs, batch_size, seed):
    """One timed ``epinn.fit``; its compilation is timed separately by ``fit`` itself."""
    model = epinn.MLP(FEATURES, activation="relu")
    key = jr.PRNGKey(seed)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    params = jax.jit(model.init)(key, xj[:1])
    t0 = time.perf_counter()
    params, hist = epinn.fit(
        model, params, xj, yj, loss="mse", optimizer="adam", learning_rate=1e-3,
        epochs=epochs, batch_size=batch_size, key=jr.fold_in(key, 1), verbose=0,
    )
    jax.block_until_ready(params)
    return {
        "train_s": sum(hist.epoch_time),
        "epoch_s": list(hist.epoch_time),
        "compile_s": hist.compile_time,
        "total_s": time.perf_counter() - t0,
        "final_loss": hist.train_loss[-1],
    }


def torch_run(x, y, epochs, batch_size, seed, threads, device="cpu"):
    """The same network and training loop in eager PyTorch (CPU)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    n, d = x.shape
    sizes = (d, *FEATURES)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()

    def epoch():
        perm = torch.randperm(n, device=device)
        total = torch.zeros((), device=device)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)  # no host sync per step
        return float(total) / n

    # Warm-up: a few steps, so both frameworks start warm (allocator, thread pool).
    for i in range(0, 20 * batch_size, batch_size):
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt[i : i + batch_size]), yt[i : i + batch_size]).backward()
        opt.step()
    epoch_s = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        final = epoch()
        epoch_s.append(time.perf_counter() - t0)
    return {"train_s": sum(epoch_s), "epoch_s": epoch_s, "final_loss": final}


def gemm_gflops(size: int = 1024, reps: int = 20) -> dict[str, float]:
    """Measured float32 GEMM rate (2 size^3 FLOPs per product) in JAX and numpy."""
    out = {}
    a = jr.normal(jr.PRNGKey(0), (size, size), dtype=jnp.float32)
    f = jax.jit(lambda m: m @ m)
    f(a).block_until_ready()
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    out["jax"] = 2 * size**3 / best / 1e9
    an = np.asarray(a)
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        an @ an
        best = min(best, time.perf_counter() - t0)
    out["numpy"] = 2 * size**3 / best / 1e9
    return out


def main(args_list=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch", action="store_true", help="time epinn only")
    parser.add_argument("--torch-device", default="cpu",
                        help="PyTorch device, e.g. 'cuda' next to JAX on a GPU (default: cpu)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(args_list)

    x, y = make_data(args.samples, args.features, args.seed)
    work = args.samples * args.epochs
    flop = 6 * n_params(args.features) * work
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, cores {os.cpu_count()}, "
          f"torch threads {args.threads}, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, load {os.getloadavg()[0]:.2f}")
    if os.getloadavg()[0] > 1.5 and "OMP_WAIT_POLICY" not in os.environ:
        print("note: the machine is busy; PyTorch's OpenMP threads spin-wait and can slow down "
              "tenfold under contention (set OMP_WAIT_POLICY=PASSIVE to avoid that)")
    print(f"problem: {args.samples} samples x {args.features}, MLP {args.features}-"
          f"{'-'.join(map(str, FEATURES))} relu, adam 1e-3, batch {args.batch_size}, "
          f"{args.epochs} epochs, {n_params(args.features)} parameters")

    result: dict = {"config": vars(args), "params": n_params(args.features),
                    "load_before": os.getloadavg()}
    # Interleave the frameworks, so both see the same background load on a shared machine.
    runs: dict[str, list] = {"epinn": [], "torch": []}
    for r in range(args.repeats):
        runs["epinn"].append(epinn_run(x, y, args.epochs, args.batch_size, args.seed + r))
        if not args.no_torch:
            runs["torch"].append(torch_run(x, y, args.epochs, args.batch_size, args.seed + r,
                                           args.threads, args.torch_device))
    result["load_after"] = os.getloadavg()

    def summarise(name: str) -> dict:
        times = [r["train_s"] for r in runs[name]]
        best, median = min(times), float(np.median(times))
        best_epoch = min(t for r in runs[name] for t in r["epoch_s"])
        out = {"runs": runs[name], "best_train_s": best, "median_train_s": median,
               "samples_per_s": work / best, "median_samples_per_s": work / median,
               "best_epoch_samples_per_s": args.samples / best_epoch,
               "gflops": flop / best / 1e9}
        extra = ""
        if name == "epinn":
            out["compile_s"] = runs[name][0]["compile_s"]  # the first fit compiles
            extra = f", compile {out['compile_s']:.2f} s (first fit)"
        print(f"{name:7s}: {work / best:12,.0f} samples/s best, {work / median:12,.0f} median, "
              f"{args.samples / best_epoch:12,.0f} fastest epoch ({best:.3f} s train{extra}, "
              f"{flop / best / 1e9:.1f} GFLOP/s, final loss {runs[name][0]['final_loss']:.4f})")
        return out

    result["epinn"] = summarise("epinn")
    if not args.no_torch:
        import torch

        result["torch"] = summarise("torch")
        result["torch"]["version"] = torch.__version__
        result["ratio"] = result["torch"]["best_train_s"] / result["epinn"]["best_train_s"]
        result["ratio_median"] = (result["torch"]["median_train_s"]
                                  / result["epinn"]["median_train_s"])
        result["ratio_fastest_epoch"] = (result["epinn"]["best_epoch_samples_per_s"]
                                         / result["torch"]["best_epoch_samples_per_s"])
        print(f"ratio epinn / pytorch samples/s: {result['ratio']:.2f}x best, "
              f"{result['ratio_median']:.2f}x median, {result['ratio_fastest_epoch']:.2f}x "
              f"fastest epoch (target >= 2.5x; torch {torch.__version__})")
    print(f"load average before/after: {result['load_before'][0]:.2f} / "
          f"{result['load_after'][0]:.2f}")

    gemm = gemm_gflops()
    result["gemm_gflops"] = gemm
    print(f"float32 GEMM 1024^3: jax {gemm['jax']:.1f} GFLOP/s, numpy {gemm['numpy']:.1f} "
          f"GFLOP/s; epinn reaches {100 * result['epinn']['gflops'] / max(gemm.values()):.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
