"""Linear maps with a hand-written transpose and a faster kernel, as one JAX primitive
(internal).

`jax.custom_vjp` gives a function a hand-written vjp but no forward mode; `jax.custom_jvp`
gives it forward mode, but reverse mode then transposes the jvp with JAX's own rules, so
a hand-written backward kernel (Pallas, or a residual-free vjp) is never used. A linear
map `L(r, t)` (linear in `t`, any function of the residuals `r`) registered as a primitive
can have both: its transpose rule calls the hand-written `Lᵀ`, its jvp rule is `L` itself
on the tangents plus JAX's jvp of the reference in `r`, and its lowering runs the fast
kernel. A nonlinear function then gets every derivative from a `custom_jvp` whose tangent
is such a map (see `with_kernels`): forward mode evaluates `L`, reverse mode runs `Lᵀ`'s
kernel, and higher orders differentiate the plain-JAX reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["linear_call", "with_kernels"]

_linear_p = Primitive("fmt_linear")
_linear_p.multiple_results = True


def _out_avals(fun, args):
    return tuple(jax.make_jaxpr(fun)(*args).out_avals)


def linear_call(
    fun: Callable,
    transpose: Callable,
    residuals: Any,
    linear: Any,
    *,
    impl: Callable | None = None,
) -> Any:
    """`fun(residuals, linear)`, a map linear in `linear`, whose reverse mode calls
    `transpose(residuals, cotangent) -> cotangent of linear` and whose value is computed
    by `impl(residuals, linear)` (default `fun`).

    `fun` is the definition: plain JAX, differentiated by JAX in `residuals` (forward mode
    and higher orders) and used for shapes; `impl` and `transpose` may be opaque kernels
    (Pallas) and must agree with `fun` and its transpose. None of the three may close over
    arrays (pass them as residuals).
    """
    res_flat, res_tree = jax.tree.flatten(residuals)
    lin_flat, lin_tree = jax.tree.flatten(linear)
    n_res = len(res_flat)
    out_tree = []

    def unflatten(args):
        res = jax.tree.unflatten(res_tree, args[:n_res])
        return res, jax.tree.unflatten(lin_tree, args[n_res:])

    def flat(f):
        def run(*args):
            out_flat, tree = jax.tree.flatten(f(*unflatten(args)))
            if not out_tree:
                out_tree.append(tree)
            return out_flat

        return run

    def flat_transpose(*args):
        res = jax.tree.unflatten(res_tree, args[:n_res])
        cts = jax.tree.unflatten(out_tree[0], args[n_res:])
        return lin_tree.flatten_up_to(transpose(res, cts))

    flat_fun = flat(fun)
    args = (*res_flat, *lin_flat)
    out_avals = _out_avals(flat_fun, args)
    outs = _linear_p.bind(
        *args,
        fun=flat_fun,
        impl=flat(impl or fun),
        transpose=flat_transpose,
        n_res=n_res,
        out_avals=out_avals,
    )
    return jax.tree.unflatten(out_tree[0], outs)


def _impl(*args, impl, **_):
    return impl(*args)


def _abstract_eval(*_, out_avals, **__):
    return out_avals


def _jvp(primals, tangents, **params):
    fun, n_res = params["fun"], params["n_res"]
    outs = _linear_p.bind(*primals, **params)
    res, lin = primals[:n_res], primals[n_res:]
    t_res, t_lin = tangents[:n_res], tangents[n_res:]
    parts = []
    if any(type(t) is not ad.Zero for t in t_lin):
        t_lin = [ad.instantiate_zeros(t) for t in t_lin]
        parts.append(_linear_p.bind(*res, *t_lin, **params))
    if any(type(t) is not ad.Zero for t in t_res):
        t_res = [ad.instantiate_zeros(t) for t in t_res]
        parts.append(jax.jvp(lambda *r: fun(*r, *lin), tuple(res), tuple(t_res))[1])
    if not parts:
        return outs, [ad.Zero(a.to_tangent_aval()) for a in params["out_avals"]]
    if len(parts) == 1:
        return outs, parts[0]
    return outs, [a + b for a, b in zip(*parts, strict=True)]


def _transpose(cts, *args, transpose, n_res, **_):
    # JAX transposes only the linear part of a linearised program, where the residuals
    # are known values: `_jvp` differentiates them through the plain-JAX `fun`, never
    # through this primitive. An undefined residual would mean a caller bound the
    # primitive with a residual it treats as linear, which `linear_call` cannot express.
    if any(ad.is_undefined_primal(r) for r in args[:n_res]):
        raise NotImplementedError("fmt_linear is linear in its linear arguments only")
    res = args[:n_res]
    cts = [ad.instantiate_zeros(c) for c in cts]
    lin_cts = transpose(*res, *cts)
    return [None] * n_res + [
        ct if ad.is_undefined_primal(a) else None
        for a, ct in zip(args[n_res:], lin_cts, strict=True)
    ]


def _batch(args, dims, *, fun, impl, transpose, n_res, **_):
    # Every operand gets the batch axis in front (unbatched ones broadcast); the map,
    # its kernel and its transpose are vmapped alike.
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    args = [
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims, strict=True)
    ]
    vfun, vimpl, vtranspose = (jax.vmap(f) for f in (fun, impl, transpose))
    outs = _linear_p.bind(
        *args,
        fun=vfun,
        impl=vimpl,
        transpose=vtranspose,
        n_res=n_res,
        out_avals=_out_avals(vfun, args),
    )
    return outs, [0] * len(outs)


_linear_p.def_impl(_impl)
_linear_p.def_abstract_eval(_abstract_eval)
ad.primitive_jvps[_linear_p] = _jvp
ad.primitive_transposes[_linear_p] = _transpose
batching.primitive_batchers[_linear_p] = _batch
mlir.register_lowering(_linear_p, mlir.lower_fun(_impl, multiple_results=True))


def with_kernels(reference: Callable, forward: Callable, backward: Callable) -> Callable:
    """`reference(*args)` (plain JAX, the definition) computed by `forward(*args)` and
    reverse-differentiated by `backward(*args, ct) -> cotangents of args` (faster kernels
    that agree with it), with derivatives of every order in both modes.

    Forward mode evaluates JAX's jvp of `reference`; reverse mode runs `backward` (the
    transpose of that jvp); second and higher derivatives differentiate `reference`.
    `args` is a tuple of arrays or None; none of the callables may close over arrays.
    """

    def tangent(args, t):
        return jax.jvp(reference, args, t)[1]

    def cotangent(args, ct):
        return jax.vjp(reference, *args)[1](ct)

    def tangent_map(args, t):
        return linear_call(tangent, cotangent_map, args, t)

    def cotangent_map(args, ct):
        return linear_call(cotangent, tangent_map, args, ct, impl=lambda a, c: backward(*a, c))

    @jax.custom_jvp
    def f(*args):
        return forward(*args)

    @f.defjvp
    def _(args, t):
        return f(*args), tangent_map(tuple(args), tuple(t))

    return f
