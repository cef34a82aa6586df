r"""Stochastic simulation of flow-defined models: exact, tau-leaping and chain-binomial.

Every flow of a :class:`~epinn.Model` is read as an *event channel*: in a small time
:math:`dt` flow :math:`f` moves one person from its source to its target with probability
:math:`r_f(t, y)\, dt`, where :math:`r_f` is the flow's rate (its *propensity*) at the
current integer counts :math:`y`. In a stratified model every flow in every group is its own
channel. The mean of this Markov jump process follows the model's ODE when the population
is large; small outbreaks differ from it: they can fizzle out, and their final size has a
distribution. Three simulators, all vectorised over a leading ensemble axis, driven by a
``jax.random`` key, and usable under ``jax.jit`` and ``jax.vmap``:

* ``method="exact"``: Gillespie's direct method (event by event). Between events the
  rates are held at their value at the last event, or the last time in ``ts``: exact for
  constant rates, the usual piecewise-constant approximation for rates that are functions
  of time (add times to ``ts`` to refine it).
* ``method="tau_leap"``: steps of at most ``dt``; the number of people leaving a
  compartment in a step is a Poisson draw with mean (total outflow rate) x step, clipped
  at the compartment's count, and split among the competing flows multinomially. With
  ``dt=None`` the step adapts (Cao, Gillespie & Petzold 2006): each leap is as long as
  keeps every rate's expected relative change below ``epsilon`` (default 0.03), its
  counts are drawn at the rates of the estimated midpoint state (Gillespie 2001), and
  when fewer than 10 events are expected in it, exact events are taken instead.
* ``method="chain_binomial"``: discrete time with steps of at most ``dt``; each of the
  :math:`y_c` people in compartment :math:`c` leaves with probability
  :math:`1 - e^{-h_c\,dt}`, :math:`h_c = \sum_f r_f / y_c` the per-capita rate of the flows
  out of :math:`c`, and the leavers are split among them multinomially (with probabilities
  :math:`r_f / \sum r_f`). The Reed-Frost model is the SIR case with ``dt = 1``,
  :math:`\beta = -N \log(1 - p)` and a recovery rate so large that :math:`e^{-\gamma}` is 0.

In both approximate methods inflows from outside the population (births, imports) are
Poisson draws with mean rate x step. No compartment ever goes negative: a channel whose
source compartment is empty has no propensity, and in a leap at most the people present
leave.

Summaries with Monte Carlo standard errors: :func:`extinction_probability`,
:func:`final_size_distribution`, :func:`peaks`, :func:`outbreak_summary`; they take the
trajectories or their per-member :class:`MemberSummaries` (:func:`member_summaries`).
:func:`simulate_summaries` simulates ensembles too large to keep as trajectories, in
chunks of which only the summaries are kept. :func:`plot_ensemble` draws quantile bands
beside the deterministic curve.

Examples:
    >>> import jax
    >>> from epinn import SIR
    >>> sim = simulate(SIR(), {"beta": 2.0, "gamma": 1.0, "N": 50.0},
    ...                {"S": 49, "I": 1, "R": 0}, [0.0, 5.0, 50.0],
    ...                key=jax.random.key(0), n=8)
    >>> sim.ys.shape, sim.ys.dtype, bool((sim.ys.sum(-1) == 50).all())
    ((8, 3, 3), dtype('int32'), True)

References:
    D. T. Gillespie (1977), Exact stochastic simulation of coupled chemical reactions,
    J. Phys. Chem. 81, 2340-2361. D. T. Gillespie (2001), Approximate accelerated
    stochastic simulation of chemically reacting systems, J. Chem. Phys. 115, 1716-1733.
    H. Andersson and T. Britton (2000), Stochastic Epidemic Models and Their Statistical
    Analysis, Springer (final sizes, Reed-Frost, the probability of a minor outbreak).
    Y. Cao, D. T. Gillespie and L. R. Petzold (2006), Efficient step size selection for
    the tau-leaping simulation method, J. Chem. Phys. 124, 044109.
"""

# The implementation modules are private; the public API is stated once, here.
from ._chunked import simulate_summaries as simulate_summaries
from ._inputs import METHODS as METHODS
from ._plotting import plot_ensemble as plot_ensemble
from ._simulate import simulate as simulate
from ._summaries import Estimate as Estimate
from ._summaries import FinalSizeDistribution as FinalSizeDistribution
from ._summaries import MemberSummaries as MemberSummaries
from ._summaries import OutbreakSummary as OutbreakSummary
from ._summaries import Peaks as Peaks
from ._summaries import extinction_probability as extinction_probability
from ._summaries import final_size_distribution as final_size_distribution
from ._summaries import final_sizes as final_sizes
from ._summaries import member_summaries as member_summaries
from ._summaries import outbreak_summary as outbreak_summary
from ._summaries import peaks as peaks
from ._trajectory import StochasticTrajectory as StochasticTrajectory

__all__ = [
    "METHODS",
    "Estimate",
    "FinalSizeDistribution",
    "MemberSummaries",
    "OutbreakSummary",
    "Peaks",
    "StochasticTrajectory",
    "extinction_probability",
    "final_size_distribution",
    "final_sizes",
    "member_summaries",
    "outbreak_summary",
    "peaks",
    "plot_ensemble",
    "simulate",
    "simulate_summaries",
]
