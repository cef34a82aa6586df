import time, sys, os
import numpy as np, jax, jax.numpy as jnp, jax.random as jr, flax.linen as nn, optax
H=64; T=28; N=int(os.environ.get("N", 20000)); B=128; HOR=7; EPOCHS=3

def _cell(g, c):
    i, f, gg, o = jnp.split(g, 4, axis=-1)
    i, f, o, gg = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o), jnp.tanh(gg)
    c = f * c + i * gg
    return c, o * jnp.tanh(c), (i, f, gg, o)

def _scan_plain(z, wh, h0, c0, unroll=1):
    def step(carry, zt):
        c, h = carry
        c, h, _ = _cell(zt + h @ wh, c)
        return (c, h), h
    _, hs = jax.lax.scan(step, (c0, h0), z, unroll=unroll)
    return hs

def make_custom(unroll):
    @jax.custom_vjp
    def f(z, wh, h0, c0):
        return _scan_plain(z, wh, h0, c0, unroll)
    def fwd(z, wh, h0, c0):
        def step(carry, zt):
            c, h = carry
            cn, hn, gates = _cell(zt + h @ wh, c)
            return (cn, hn), (hn, c, jnp.concatenate(gates, -1), jnp.tanh(cn))
        _, (hs, cprev, gates, tc) = jax.lax.scan(step, (c0, h0), z, unroll=unroll)
        hprev = jnp.concatenate([h0[None], hs[:-1]], 0)
        return hs, (wh, hprev, cprev, gates, tc)
    def bwd(res, dhs):
        wh, hprev, cprev, gates, tc = res
        def step(carry, xs):
            dh_next, dc_next = carry
            dh_t, cp, g, tct = xs
            i, f_, gg, o = jnp.split(g, 4, axis=-1)
            dh = dh_t + dh_next
            do = dh * tct
            dc = dc_next + dh * o * (1 - tct * tct)
            dg = jnp.concatenate([dc * gg * i * (1 - i), dc * cp * f_ * (1 - f_),
                                  dc * i * (1 - gg * gg), do * o * (1 - o)], -1)
            return (dg @ wh.T, dc * f_), dg
        (dh0, dc0), dG = jax.lax.scan(step, (jnp.zeros_like(hprev[0]), jnp.zeros_like(cprev[0])),
                                      (dhs, cprev, gates, tc), reverse=True, unroll=unroll)
        dwh = jnp.einsum("tbh,tbg->hg", hprev, dG)
        return dG, dwh, dh0, dc0
    f.defvjp(fwd, bwd)
    return f

class Fused(nn.Module):
    kind: str = "custom"
    unroll: int = 1
    @nn.compact
    def __call__(self, x):
        z = nn.Dense(4*H)(x)
        wh = self.param("wh", nn.initializers.orthogonal(), (H, 4*H))
        zt = jnp.swapaxes(z, 0, 1)
        h0 = jnp.zeros((x.shape[0], H))
        if self.kind == "custom":
            hs = make_custom(self.unroll)(zt, wh, h0, h0)
        else:
            hs = _scan_plain(zt, wh, h0, h0, self.unroll)
        return nn.Dense(HOR)(hs[-1])


_S = None
def _scales(H):
    one = jnp.ones((H,))
    s = jnp.concatenate([0.5 * one, 0.5 * one, one, 0.5 * one])
    b = jnp.concatenate([0.5 * one, 0.5 * one, 0 * one, 0.5 * one])
    return s, b

def _tcell(g, c, s, b):
    a = jnp.tanh(g * s) * s + b   # sigmoid(x) = 0.5 tanh(x/2) + 0.5
    i, f, gg, o = jnp.split(a, 4, axis=-1)
    c = f * c + i * gg
    tc = jnp.tanh(c)
    return c, o * tc, a, tc

def _tscan(z, wh, h0, c0, unroll=1):
    s, b = _scales(wh.shape[0])
    def step(carry, zt):
        c, h = carry
        c, h, _, _ = _tcell(zt + h @ wh, c, s, b)
        return (c, h), h
    _, hs = jax.lax.scan(step, (c0, h0), z, unroll=unroll)
    return hs

@jax.custom_vjp
def tcustom(z, wh, h0, c0):
    return _tscan(z, wh, h0, c0)
def _tfwd(z, wh, h0, c0):
    s, b = _scales(wh.shape[0])
    def step(carry, zt):
        c, h = carry
        cn, hn, a, tc = _tcell(zt + h @ wh, c, s, b)
        return (cn, hn), (hn, c, a, tc)
    _, (hs, cprev, acts, tc) = jax.lax.scan(step, (c0, h0), z)
    hprev = jnp.concatenate([h0[None], hs[:-1]], 0)
    return hs, (wh, hprev, cprev, acts, tc)
def _tbwd(res, dhs):
    wh, hprev, cprev, acts, tc = res
    s, b = _scales(wh.shape[0])
    H = wh.shape[0]
    def step(carry, xs):
        dh_next, dc_next = carry
        dh_t, cp, a, tct = xs
        i, f_, gg, o = jnp.split(a, 4, axis=-1)
        dh = dh_t + dh_next
        dc = dc_next + dh * o * (1 - tct * tct)
        da = jnp.concatenate([dc * gg, dc * cp, dc * i, dh * tct], -1)
        # d act/d g: sigmoid' = a(1-a) ; tanh' = 1-a^2  -> (a - b)... use unified: s*(1 - t^2)*s with t=(a-b)/s
        t = (a - b) / s
        dg = da * s * s * (1 - t * t)
        return (dg @ wh.T, dc * f_), dg
    (dh0, dc0), dG = jax.lax.scan(step, (jnp.zeros_like(hprev[0]), jnp.zeros_like(cprev[0])),
                                  (dhs, cprev, acts, tc), reverse=True)
    dwh = jnp.einsum("tbh,tbg->hg", hprev, dG)
    return dG, dwh, dh0, dc0
tcustom.defvjp(_tfwd, _tbwd)

class TFused(nn.Module):
    kind: str = "custom"
    @nn.compact
    def __call__(self, x):
        wh = self.param("wh", nn.initializers.orthogonal(), (H, 4*H))
        h0 = jnp.zeros((x.shape[0], H))
        if self.kind == "noh":
            wi = self.param("wi", nn.initializers.lecun_normal(), (x.shape[-1], 4*H))
            bb = self.param("b", nn.initializers.zeros, (4*H,))
            s, b = _scales(H)
            def step(carry, xt):
                c, h = carry
                c, h, _, _ = _tcell(xt @ wi + bb + h @ wh, c, s, b)
                return (c, h), h
            _, hs = jax.lax.scan(step, (h0, h0), jnp.swapaxes(x, 0, 1))
        else:
            z = jnp.swapaxes(nn.Dense(4*H)(x), 0, 1)
            hs = (tcustom if self.kind == "custom" else _tscan)(z, wh, h0, h0)
        return nn.Dense(HOR)(hs[-1])

class Flax(nn.Module):
    opt: bool = True
    unroll: int = 1
    @nn.compact
    def __call__(self, x):
        cell = nn.OptimizedLSTMCell(H) if self.opt else nn.LSTMCell(H)
        h = nn.RNN(cell, unroll=self.unroll)(x)
        return nn.Dense(HOR)(h[:, -1])

rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((N, T, 1)).astype(np.float32))
y = jnp.asarray(rng.standard_normal((N, HOR)).astype(np.float32))

def bench(name, m):
    p = m.init(jr.PRNGKey(0), x[:1]); tx = optax.adam(1e-3); s = tx.init(p)
    nb = N // B
    def step(carry, idx):
        p, s = carry
        l, g = jax.value_and_grad(lambda p: jnp.mean((m.apply(p, x[idx]) - y[idx])**2))(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), l
    @jax.jit
    def epoch(p, s, k):
        perm = jr.permutation(k, N)[: nb * B].reshape(nb, B)
        (p, s), l = jax.lax.scan(step, (p, s), perm)
        return p, s, l.mean()
    t0 = time.perf_counter(); c = epoch.lower(p, s, jr.PRNGKey(0)).compile(); ct = time.perf_counter() - t0
    ts = []
    for e in range(EPOCHS + 1):
        t0 = time.perf_counter(); p, s, l = c(p, s, jr.PRNGKey(e)); l.block_until_ready(); ts.append(time.perf_counter() - t0)
    ts = sorted(ts)[:EPOCHS]
    print(f"{name:28s} compile {ct:5.1f}s  seq/s {nb*B*EPOCHS/sum(ts):8.0f}  loss {float(l):.4f}", flush=True)

def bench_torch(threads):
    import torch
    torch.set_num_threads(threads)
    class TM(torch.nn.Module):
        def __init__(s):
            super().__init__(); s.l = torch.nn.LSTM(1, H, batch_first=True); s.h = torch.nn.Linear(H, HOR)
        def forward(s, x):
            o, _ = s.l(x); return s.h(o[:, -1])
    m = TM(); opt = torch.optim.Adam(m.parameters(), 1e-3)
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))
    ts = []
    for e in range(EPOCHS + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(N)
        for i in range(0, (N // B) * B, B):
            idx = perm[i:i+B]
            opt.zero_grad(); loss = ((m(xt[idx]) - yt[idx])**2).mean(); loss.backward(); opt.step()
        ts.append(time.perf_counter() - t0)
    ts = sorted(ts)[:EPOCHS]
    print(f"{'torch threads=%d' % threads:28s} {'':14s} seq/s {(N//B)*B*EPOCHS/sum(ts):8.0f}", flush=True)

print(os.environ.get("XLA_FLAGS"), jax.__version__, jax.devices(), os.cpu_count(), len(os.sched_getaffinity(0)), flush=True)
import flax; print("flax", flax.__version__, flush=True)
for v in sys.argv[1:]:
    if v.startswith("torch"): bench_torch(int(v[5:]))
    elif v.startswith("flaxopt"): bench(v, Flax(True, int(v[7:] or 1)))
    elif v.startswith("flaxcell"): bench(v, Flax(False, int(v[8:] or 1)))
    elif v.startswith("hoist"): bench(v, Fused("plain", int(v[5:] or 1)))
    elif v.startswith("custom"): bench(v, Fused("custom", int(v[6:] or 1)))
    elif v.startswith("t-"): bench(v, TFused(v[2:]))
if "check" in sys.argv:
    m1, m2 = TFused("custom"), TFused("plain")
    p = m1.init(jr.PRNGKey(0), x[:4])
    g1 = jax.grad(lambda p: jnp.sum(m1.apply(p, x[:16])**2))(p)
    g2 = jax.grad(lambda p: jnp.sum(m2.apply(p, x[:16])**2))(p)
    print(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a-b))), g1, g2))
    # against plain sigmoid formulation
    z = jr.normal(jr.PRNGKey(1), (5, 3, 4*H)); wh = jr.normal(jr.PRNGKey(2), (H, 4*H)) * 0.1; h0 = jnp.zeros((3, H))
    print(float(jnp.max(jnp.abs(_tscan(z, wh, h0, h0) - _scan_plain(z, wh, h0, h0)))))
    gA = jax.grad(lambda z, w: jnp.sum(jnp.sin(tcustom(z, w, h0, h0))), (0, 1))(z, wh)
    gB = jax.grad(lambda z, w: jnp.sum(jnp.sin(_scan_plain(z, w, h0, h0))), (0, 1))(z, wh)
    print([float(jnp.max(jnp.abs(a - b))) for a, b in zip(gA, gB)])
