"""Random numbers of the stochastic simulators (private): xoshiro128** streams seeded from a
``jax.random`` key, and the uniform, Poisson and binomial variates drawn from them.

The simulators draw a few numbers per event or step for every member; threefry per draw
would cost about as much as the rest of the event, so each member's streams are seeded
once by threefry and advanced by xoshiro128** (Blackman & Vigna 2018), a few integer
operations per number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array


def _rotl(x: Array, k: int) -> Array:
    return (x << jnp.uint32(k)) | (x >> jnp.uint32(32 - k))


def _xoshiro128ss(s: Array) -> tuple[Array, Array]:
    """One step of xoshiro128** (Blackman & Vigna 2018): ``(new state, 32 random bits)``.

    ``s`` is the ``(4,)`` uint32 state (not all zero). Used for the per-event uniforms of
    the exact method, where threefry per event cost about as much as the rest of the
    event; each member's state is seeded from its ``jax.random`` key by threefry.
    """
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    out = _rotl(s1 * jnp.uint32(5), 7) * jnp.uint32(9)
    t = s1 << jnp.uint32(9)
    s2 = s2 ^ s0
    s3 = s3 ^ s1
    s1 = s1 ^ s2
    s0 = s0 ^ s3
    s2 = s2 ^ t
    s3 = _rotl(s3, 11)
    return jnp.stack([s0, s1, s2, s3]), out


def _seed_streams(key: Array, shape: tuple[int, ...]) -> Array:
    """``(4, *shape)`` xoshiro128** states from a ``jax.random`` key (none all zero)."""
    seed = jr.bits(key, (4, *shape), jnp.uint32)
    return seed.at[0].set(jnp.where(jnp.all(seed == 0, axis=0), jnp.uint32(1), seed[0]))


def _uniform(rng: Array, dtype) -> tuple[Array, Array]:
    rng, bits = _xoshiro128ss(rng)
    return rng, _unit_interval(bits, dtype)


def _tr_proposal(rng: Array, dtype, a: Array, b: Array, v_r: Array):
    r"""One proposal of Hörmann's transformed rejection with squeeze (PTRS and BTRS).

    Draws :math:`U, V` uniform on :math:`[0, 1)`, :math:`u = U - 1/2`,
    :math:`u_s = 1/2 - |u|`. Returns ``(rng, V, u_s, spread, squeeze)`` with
    ``spread`` :math:`= (2a/u_s + b)\,u` (the candidate is its floor after a shift) and
    ``squeeze`` :math:`= u_s \ge 0.07 \wedge V \le v_r` (accept without the density test).
    """
    rng, u = _uniform(rng, dtype)
    rng, v = _uniform(rng, dtype)
    u = u - 0.5
    us = 0.5 - jnp.abs(u)
    return rng, v, us, (2 * a / us + b) * u, (us >= 0.07) & (v <= v_r)


def _poisson(rng: Array, lam: Array) -> tuple[Array, Array]:
    r"""Poisson draws with means ``lam`` (any shape; streams ``rng``: ``(4, *lam.shape)``).

    Inversion (sequential search) for :math:`\lambda < 10`, and Hörmann's transformed
    rejection with squeeze (PTRS) above, the two algorithms of ``jax.random.poisson``,
    here on xoshiro128** uniforms so that a draw costs a few arithmetic operations.

    References:
        W. Hörmann (1993), The transformed rejection method for generating Poisson random
        variables, Insurance: Mathematics and Economics 12, 39-45.
    """
    dtype = lam.dtype
    small = lam < 10
    rng, u = _uniform(rng, dtype)
    ls = jnp.where(small, lam, 0.0)

    def inv_go(c):
        k, p, F = c
        return small & (u > F) & (k < 200)

    def inv_body(c):
        k, p, F = c
        go = inv_go(c)
        k1 = k + go
        p1 = jnp.where(go, p * ls / jnp.maximum(k1, 1), p)
        return k1, p1, jnp.where(go, F + p1, F)

    p0 = jnp.exp(-ls)
    k_small, _, _ = jax.lax.while_loop(lambda c: jnp.any(inv_go(c)), inv_body,
                                       (jnp.zeros_like(lam), p0, p0))
    ll = jnp.where(small, 10.0, lam)
    log_l = jnp.log(ll)
    b = 0.931 + 2.53 * jnp.sqrt(ll)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)

    def rej_body(c):
        rng, k, done = c
        rng, V, us, spread, squeeze = _tr_proposal(rng, dtype, a, b, vr)
        kk = jnp.floor(spread + ll + 0.43)
        reject = (kk < 0) | ((us < 0.013) & (V > us))
        lhs = jnp.log(V) + jnp.log(inv_alpha) - jnp.log(a / (us * us) + b)
        rhs = -ll + kk * log_l - jax.lax.lgamma(kk + 1)
        accept = squeeze | (~reject & (lhs <= rhs))
        new = ~done & accept
        return rng, jnp.where(new, kk, k), done | accept

    rng, k_large, _ = jax.lax.while_loop(lambda c: jnp.any(~c[2]), rej_body,
                                         (rng, jnp.zeros_like(lam), small))
    return rng, jnp.where(small, k_small, k_large)


_STIRLING_TAIL = np.array([0.0810614667953272, 0.0413406959554092, 0.0276779256849983,
                           0.02079067210376509, 0.0166446911898211, 0.0138761288230707,
                           0.0118967099458917, 0.0104112652619720, 0.00925546218271273,
                           0.00833056343336287])


def _stirling_tail(k: Array) -> Array:
    r""":math:`\log k! - [(k + 1/2)\log(k + 1) - (k + 1) + \log\sqrt{2\pi}]` (tabled to 9)."""
    kc = jnp.clip(k, 0.0, 9.0)
    kp1sq = (kc + 1) * (kc + 1)
    approx = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (kc + 1)
    table = jnp.asarray(_STIRLING_TAIL, k.dtype)[jnp.floor(kc).astype(jnp.int32)]
    return jnp.where(k <= 9, table, approx)


def _binomial(rng: Array, n: Array, p: Array) -> tuple[Array, Array]:
    r"""Binomial draws ``Bin(n, p)`` (any shape; streams ``rng`` of ``(4, *n.shape)``).

    With :math:`q = \min(p, 1 - p)`: for :math:`nq \le 10` the count of geometric waiting
    times that fit in ``n`` trials (inversion), above Hörmann's transformed rejection
    (BTRS), the algorithms of ``jax.random.binomial``, on xoshiro128** uniforms.

    References:
        W. Hörmann (1993), The generation of binomial random variates, J. Statist.
        Comput. Simul. 46, 101-110.
    """
    dtype = p.dtype
    n = jnp.floor(jnp.broadcast_to(n, p.shape).astype(dtype))
    flip = p >= 0.5
    q = jnp.clip(jnp.where(flip, 1.0 - p, p), 0.0, 0.5)
    trivial = (q <= 0) | (n <= 0)
    inversion = ~trivial & (n * q <= 10.0)
    log1mq = jnp.log1p(-jnp.where(inversion, q, 0.5))

    def inv_body(c):
        rng, i, count, total = c
        go = inversion & (total <= n)
        rng, u = _uniform(rng, dtype)
        count = count + go
        total = jnp.where(go, total + jnp.ceil(jnp.log(u) / log1mq), total)
        return rng, i + 1, count, total

    rng, _, count, _ = jax.lax.while_loop(
        lambda c: jnp.any(inversion & (c[3] <= n)) & (c[1] < 1000), inv_body,
        (rng, jnp.zeros((), jnp.int32), jnp.zeros_like(q), jnp.zeros_like(q)))
    k_inv = jnp.maximum(count - 1, 0.0)

    rejection = ~trivial & ~inversion
    nb = jnp.where(rejection, n, 1e4)
    qb = jnp.where(rejection, q, 0.5)
    sd = jnp.sqrt(nb * qb * (1 - qb))
    b = 1.15 + 2.53 * sd
    a = -0.0873 + 0.0248 * b + 0.01 * qb
    c0 = nb * qb + 0.5
    v_r = 0.92 - 4.2 / b
    r = qb / (1 - qb)
    alpha = (2.83 + 5.1 / b) * sd
    m = jnp.floor((nb + 1) * qb)

    def rej_body(c):
        rng, k_out, done = c
        rng, v, us, spread, squeeze = _tr_proposal(rng, dtype, a, b, v_r)
        k = jnp.floor(spread + c0)
        reject = (k < 0) | (k > nb)
        lv = jnp.log(v * alpha / (a / (us * us) + b))
        ub = ((m + 0.5) * jnp.log((m + 1) / (r * (nb - m + 1)))
              + (nb + 1) * jnp.log((nb - m + 1) / (nb - k + 1))
              + (k + 0.5) * jnp.log(r * (nb - k + 1) / (k + 1))
              + _stirling_tail(m) + _stirling_tail(nb - m)
              - _stirling_tail(k) - _stirling_tail(nb - k))
        accept = squeeze | (~reject & (lv <= ub))
        return rng, jnp.where(~done & accept, k, k_out), done | accept

    rng, k_rej, _ = jax.lax.while_loop(lambda c: jnp.any(~c[2]), rej_body,
                                       (rng, jnp.zeros_like(q), ~rejection))
    k = jnp.where(trivial, 0.0, jnp.where(inversion, k_inv, k_rej))
    return rng, jnp.where(flip, n - k, k)


def _unit_interval(bits: Array, dtype) -> Array:
    """Uniforms on :math:`[0, 1)` from 32-bit words (their top 24 bits)."""
    return (bits >> jnp.uint32(8)).astype(dtype) * jnp.asarray(2.0**-24, dtype)
