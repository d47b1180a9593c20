"""GQ on parameter pytrees: `init`, `quantize_params`, `project_centroids`, `snap` / `snap_to`.

For a leaf W matched by a rule with b bits (K = 2**b centroids c, sorted, in [-1, 1]):

    s = stop_gradient(max|W|)            per tensor, or per output channel: max over every axis
                                         but the rule's channel axes (`Rule.axes_for`)
    u = W / s,   v = compress_µ(u)       (s = 0, an all-zero tensor, divides by 1 instead)
    Ŵ = s · assign(v, c, α)              hard or soft, see `gq_jax.assignment`

Ŵ has W's shape and dtype. Gradients reach W (through v) and c (through the custom VJP, by the
config's `estimator`: with "straight_through" ∂L/∂W = ∂L/∂Ŵ).
The scale s has W's shape with every non-channel axis 1 and the leading 1s dropped (`scale_shape`),
so it broadcasts against W: [] per tensor, [out] for Dense [in, out], [heads, head_dim] for a
DenseGeneral [D, heads, head_dim].
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gq_jax.assignment import assign
from gq_jax.companding import compress
from gq_jax.config import (
    GQConfig,
    Rule,
    check_no_unused_rules,
    leaves_with_paths,
    path_to_str,
    rule_for,
)
from gq_jax.kmeans import kmeans_1d


class QuantState(NamedTuple):
    """Learnable GQ state: sorted centroids [K] in the µ-law space, keyed by the leaf's path.

    Unmatched leaves have no entry. A NamedTuple of a dict, so it jits, checkpoints and takes an
    optimizer (e.g. its own learning rate through `optax.partition`) like any pytree.
    """

    centroids: dict[str, jax.Array]


def check_leaf(path: str, leaf: Any, rule: Rule) -> None:
    """Raise ValueError naming `path` when a matched leaf cannot be quantized.

    Integer or boolean leaves are always rejected; NaN/Inf are detected when `leaf` holds concrete
    values (inside `jit` values are abstract and only the dtype is checked).
    """
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"leaf {path!r} (dtype {dtype}) is matched by Rule({rule.pattern!r}) but only "
            "floating-point leaves can be quantized; narrow the pattern"
        )
    rule.axes_for(path, np.shape(leaf))
    if not isinstance(leaf, jax.core.Tracer):
        values = np.asarray(leaf, dtype=np.float32)
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise ValueError(f"leaf {path!r} holds {bad} NaN/Inf value(s); cannot quantize it")


def scale_shape(shape: tuple[int, ...], channel_axes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the scales of a leaf of `shape`: its sizes on `channel_axes`, 1 elsewhere,
    leading 1s dropped ([16, 4, 8] with axes (1, 2): [4, 8]; axes (): [])."""
    kept = [n if axis in channel_axes else 1 for axis, n in enumerate(shape)]
    while kept and kept[0] == 1:
        kept.pop(0)
    return tuple(kept)


def scale(w: jax.Array, channel_axes: tuple[int, ...]) -> jax.Array:
    """s = max|W| over every axis but `channel_axes` (all axes for ()), of shape `scale_shape`."""
    reduced = tuple(axis for axis in range(w.ndim) if axis not in channel_axes)
    s = jnp.max(jnp.abs(w.astype(jnp.float32)), axis=reduced, keepdims=True)
    return s.reshape(scale_shape(w.shape, channel_axes))


def normalise(w: jax.Array, s: jax.Array) -> jax.Array:
    """u = W / s in [-1, 1] (float32), dividing by 1 where s = 0 so an all-zero tensor stays 0."""
    return w.astype(jnp.float32) / jnp.where(s > 0, s, 1.0)


def companded(w: jax.Array, channel_axes: tuple[int, ...], mu: float) -> tuple[jax.Array, jax.Array]:
    """(v, s): the companded weights v (W's shape, float32) and the stop-gradient scale s."""
    s = jax.lax.stop_gradient(scale(w, channel_axes))
    return compress(normalise(w, s), mu), s


def leaf_companded(path: str, leaf: Any, rule: Rule, mu: float) -> tuple[jax.Array, jax.Array]:
    """`companded` of a matched leaf with the scales of its rule (`Rule.axes_for`)."""
    w = jnp.asarray(leaf)
    return companded(w, rule.axes_for(path, w.shape), mu)


def matched_leaves(params: Any, config: GQConfig) -> Iterator[tuple[str, Any, Rule]]:
    """(path, leaf, rule) for every leaf a rule matches, each checked by `check_leaf`."""
    for path, leaf in leaves_with_paths(params):
        rule = rule_for(path, config)
        if rule is not None:
            check_leaf(path, leaf, rule)
            yield path, leaf, rule


def map_matched_leaves(fn: Callable[[str, Any, Rule], Any], params: Any, config: GQConfig) -> Any:
    """`params` with every matched leaf replaced by fn(path, leaf, rule) (checked first)."""

    def visit(path_keys, leaf):
        path = path_to_str(path_keys)
        rule = rule_for(path, config)
        if rule is None:
            return leaf
        check_leaf(path, leaf, rule)
        return fn(path, leaf, rule)

    return jax.tree_util.tree_map_with_path(visit, params)


def _initial_centroids(path: str, w: jax.Array, rule: Rule, config: GQConfig) -> jax.Array:
    if config.init_for(rule.bits) == "uniform":
        return jnp.linspace(-1.0, 1.0, rule.num_centroids, dtype=jnp.float32)
    v, _ = leaf_companded(path, w, rule, config.mu)
    return jnp.asarray(kmeans_1d(np.asarray(v), rule.num_centroids, config.kmeans_iters))


def init(params: Any, config: GQConfig) -> QuantState:
    """Centroids for every leaf of `params` that a rule of `config` matches.

    Returns:
      QuantState with K = 2**bits sorted centroids in [-1, 1] per matched leaf: a uniform grid
      (init="uniform"), the k-means centres of the leaf's companded weights (init="kmeans"), or
      k-means at <= 2 bits and the grid above (init="auto").
    Raises:
      ValueError naming the leaf for integer or non-finite matched leaves, and listing unused
      rules when `config.strict` is set.
    """
    check_no_unused_rules(params, config)
    centroids = {
        path: _initial_centroids(path, leaf, rule, config)
        for path, leaf, rule in matched_leaves(params, config)
    }
    return QuantState(centroids)


def centroids_for(path: str, rule: Rule, state: QuantState) -> jax.Array:
    """The state's centroids of leaf `path`, checked against the rule's bit depth."""
    if path not in state.centroids:
        raise ValueError(
            f"no centroids for leaf {path!r} (matched by Rule({rule.pattern!r})); make the state "
            "with init(params, config) for these params and this config"
        )
    centroids = state.centroids[path]
    if centroids.ndim != 1 or not 1 <= centroids.shape[0] <= rule.num_centroids:
        raise ValueError(
            f"centroids of leaf {path!r} have shape {centroids.shape}; Rule({rule.pattern!r}) "
            f"with {rule.bits} bits expects at most {rule.num_centroids}"
        )
    return centroids


def quantize_leaf(
    path: str,
    w: jax.Array,
    centroids: jax.Array,
    alpha: jax.Array,
    rule: Rule,
    config: GQConfig,
    hard: bool,
) -> jax.Array:
    """Ŵ = s · assign(compress(W / s), c, α) with W's shape and dtype."""
    v, s = leaf_companded(path, w, rule, config.mu)
    hard_forward = hard or config.mode == "ste"
    u_hat = assign(
        v.ravel(), centroids, alpha, hard_forward, config.distance, config.window, config.mu,
        config.estimator, config.backward_alpha,
    )
    return (u_hat.reshape(w.shape) * s).astype(w.dtype)


def quantize_params(
    params: Any,
    state: QuantState,
    config: GQConfig,
    alpha: jax.typing.ArrayLike,
    *,
    hard: bool = False,
) -> Any:
    """The differentiable GQ projection of `params`, used inside the training loss.

    Unlike `qwix.quantize_params`, which converts trained float params into integer arrays, this
    returns float params of the same structure, shapes and dtypes whose matched leaves are replaced
    by their quantized values, differentiable w.r.t. `params` and `state.centroids`.

    Args:
      params: any pytree of arrays.
      state: from `init(params, config)`.
      config: the GQConfig.
      alpha: softmax sharpness α (scalar; a traced value is fine: no recompilation per step).
      hard: forward the hard values whatever `config.mode` (evaluation; `snap`).
    Returns:
      params with matched leaves quantized, unmatched leaves passed through unchanged.
    """
    alpha = jnp.asarray(alpha, jnp.float32)

    return map_matched_leaves(
        lambda path, leaf, rule: quantize_leaf(
            path, leaf, centroids_for(path, rule, state), alpha, rule, config, hard
        ),
        params,
        config,
    )


def snap_to(params: Any, hard_params: Any, config: GQConfig) -> Any:
    """Latent weights := `hard_params` (any method's hard values, `params`' structure), except the
    weights with |W| = s, which keep their latent value, so every scale s is unchanged.

    Replacing those too would shrink s to max|Ŵ| = s · max_k |expand(c_k)| whenever the outermost
    centroid lies inside ±1 (k-means init, or after training): every u = W / s would grow, weights
    would move to other centroids and magnitudes would shrink at each snap. With the scales kept,
    compress(Ŵ / s) = c_k, so the hard forward pass is the same before and after a snap.
    """
    hard_leaves = dict(leaves_with_paths(hard_params))

    def keep_scale(path: str, w: jax.Array, rule: Rule) -> jax.Array:
        sets_scale = jnp.abs(w.astype(jnp.float32)) == scale(w, rule.axes_for(path, w.shape))
        return jnp.where(sets_scale, w, hard_leaves[path].astype(w.dtype))

    return map_matched_leaves(keep_scale, params, config)


def snap(params: Any, state: QuantState, config: GQConfig) -> Any:
    """The quantization-frequency step of GQ: `snap_to` the hard quantized values."""
    return snap_to(params, quantize_params(params, state, config, 1.0, hard=True), config)


def project_centroids(state: QuantState) -> QuantState:
    """Sort each centroid vector and clip it to [-1, 1] (after an optimizer update)."""
    return QuantState({path: jnp.clip(jnp.sort(c), -1.0, 1.0) for path, c in state.centroids.items()})
