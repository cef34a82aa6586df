"""Benchmark: NUTS on the boarding-school negative-binomial SIR (the Stan case study).

Problem: SIR with S0 = 762, I0 = 1 at day 0, prevalence observed on days 1..14, priors
beta ~ N(2, 1)+, gamma ~ N(0.4, 0.5)+, 1/phi ~ Exp(5), negative-binomial likelihood
(:func:`epinn.fit_epidemic`); 4 chains x (1000 warm-up + 1000 draws), vectorised
chains, float32, Tsit5 inside the model.

Variants (each runs in a fresh subprocess, so no compilation is shared between them):

* ``reverse``: the straightforward numpyro + diffrax set-up -- reverse-mode gradients of the
  log density through diffrax's ``RecursiveCheckpointAdjoint`` (rtol 1e-6, atol 1e-8).
* ``forward``: epinn's default -- numpyro's ``forward_mode_differentiation=True`` with
  diffrax ``ForwardMode`` (three tangents, no checkpointed backward pass), same tolerances.
* ``forward-rtol1e-5``: as ``forward`` with rtol 1e-5, atol 1e-7 (about 30% fewer steps;
  the expected counts change by < 1e-4 relative, far below the Poisson noise).

Printed per variant: wall time and process CPU time of the whole fit (compilation
included: on this problem it is about half the cost), the minimum bulk ESS of beta and gamma,
ESS per second, divergences, R-hat and the posterior means. With ``--cache DIR`` each
variant runs twice with JAX's persistent compilation cache in ``DIR``. Note that JAX does
not write programs with host callbacks to that cache, and equinox's runtime checks inside
diffrax add callbacks (unless ``EQX_ON_ERROR=nan`` is set before import, which turns
solver errors into NaNs), so by default the second run still compiles the sampler.

On a machine shared with other jobs the wall time depends on the load (printed); the
process CPU time is the better measure of the work done (the vectorised chains run on one
core). Run::

    python benchmarks/bench_bayes.py [--variants reverse,forward] [--cache /tmp/jaxcache]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {
    "reverse": dict(forward_mode=False, rtol=1e-6, atol=1e-8),
    "forward": dict(forward_mode=True, rtol=1e-6, atol=1e-8),
    "forward-rtol1e-5": dict(forward_mode=True, rtol=1e-5, atol=1e-7),
}


def worker(variant: str, warmup: int, samples: int, chains: int, seed: int) -> dict:
    """One timed fit in this process (imports first, outside the timing)."""
    import jax.random as jr

    import epinn
    from epinn import bayes

    data = epinn.load_boarding_school()
    t0, c0 = time.perf_counter(), time.process_time()
    fit = bayes.fit_epidemic(
        data.t, data.counts, key=jr.PRNGKey(seed), y0=dict(data.y0), t0=0.0,
        num_warmup=warmup, num_samples=samples, num_chains=chains, warn=False,
        **VARIANTS[variant],
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    table = fit.table(("beta", "gamma", "R0", "phi_inv"))
    ess = min(table["beta"]["ess"], table["gamma"]["ess"])
    return {
        "variant": variant,
        "wall_s": wall,
        "cpu_s": cpu,
        "min_ess_beta_gamma": ess,
        "ess_per_s_wall": ess / wall,
        "ess_per_s_cpu": ess / cpu,
        "divergences": fit.num_divergences,
        "max_r_hat": max(v["r_hat"] for v in table.values()),
        "posterior_mean": {k: v["mean"] for k, v in table.items()},
        "load_average": os.getloadavg(),
    }


def run_variant(variant: str, args, cache: str | None) -> dict:
    env = dict(os.environ)
    cmd = [sys.executable, __file__, "--worker", variant, "--warmup", str(args.warmup),
           "--samples", str(args.samples), "--chains", str(args.chains),
           "--seed", str(args.seed)]
    if cache:
        cmd += ["--cache", cache]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args_list: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="reverse,forward,forward-rtol1e-5")
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="JAX persistent compilation cache folder")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(args_list)
    if args.worker:
        if args.cache:
            import jax

            jax.config.update("jax_compilation_cache_dir", args.cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        print(json.dumps(worker(args.worker, args.warmup, args.samples, args.chains,
                                args.seed)))
        return {}
    results = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
        runs = [("cold", run_variant(variant, args, args.cache))]
        if args.cache:
            runs.append(("warm cache", run_variant(variant, args, args.cache)))
        for label, r in runs:
            r["run"] = label
            results.append(r)
            m = r["posterior_mean"]
            print(f"{variant:>17} {label:>10}: wall {r['wall_s']:6.1f} s, cpu {r['cpu_s']:6.1f} s, "
                  f"min ESS(beta, gamma) {r['min_ess_beta_gamma']:6.0f}, "
                  f"ESS/s {r['ess_per_s_wall']:5.1f} (wall) {r['ess_per_s_cpu']:5.1f} (cpu), "
                  f"divergences {r['divergences']}, max R-hat {r['max_r_hat']:.3f}, "
                  f"beta {m['beta']:.3f} gamma {m['gamma']:.3f} R0 {m['R0']:.2f}, "
                  f"load {r['load_average'][0]:.1f}", flush=True)
    summary = {"problem": "boarding-school NB SIR", "chains": args.chains,
               "warmup": args.warmup, "samples": args.samples, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
