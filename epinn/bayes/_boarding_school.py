"""The Stan case study on the 1978 boarding-school outbreak (private, :mod:`epinn.bayes`)."""

from __future__ import annotations

import jax

from ._epidemic import fit_epidemic


def bayesian_boarding_school(
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    *,
    warn: bool = True,
) -> dict[str, dict[str, float]]:
    r"""The Stan case-study posterior for the boarding-school outbreak, as a summary dict.

    SIR with :math:`S_0 = 762`, :math:`I_0 = 1` at day 0, prevalence observed at days
    1..14, the priors of :func:`default_priors` and a negative-binomial likelihood, sampled
    by :func:`fit_epidemic`.

    Args:
        key: PRNG key.
        num_warmup, num_samples, num_chains: NUTS sizes.
        warn: warn when the diagnostics fail.

    Returns:
        ``{"beta", "gamma", "R0", "recovery_time"}`` each ``{"mean", "lo", "hi"}`` (posterior
        mean and equal-tailed 95% interval).
    """
    from ..datasets import load_boarding_school

    data = load_boarding_school()
    fit = fit_epidemic(
        data.t, data.counts, key=key, y0=dict(data.y0), population=float(data.population),
        t0=0.0, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        warn=warn,
    )
    table = fit.table(("beta", "gamma", "R0", "recovery_time"))
    return {k: {s: v[s] for s in ("mean", "lo", "hi")} for k, v in table.items()}
