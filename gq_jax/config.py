"""What to quantize and how: `Rule`, `GQConfig`, and matching rules to pytree leaves.

A rule is a regex full-matched against the '/'-joined path of a leaf (``encoder/lstm_0/kernel``).
Rules are ordered and the first match wins, so a specific rule placed before ``.*kernel`` gives one
layer its own bit depth.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterator, Sequence

import jax
import numpy as np

GRANULARITIES = ("tensor", "channel")
MODES = ("ste", "soft")
ESTIMATORS = ("soft_jacobian", "straight_through", "capped_alpha")
DISTANCES = ("sq", "abs")
INITS = ("auto", "uniform", "kmeans")


# Names Flax gives the DenseGeneral projections of `nn.MultiHeadDotProductAttention` into heads.
HEAD_PROJECTIONS = ("query", "key", "value")


def default_channel_axes(path: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The axes of a leaf that keep their own scale under granularity "channel" by default: its
    output axes, one scale per output channel, never one scale shared by several heads.

    A kernel maps input axes to output axes, which shape alone cannot always tell apart (a
    DenseGeneral [D, heads, head_dim] and a 1-D conv [k, in, out] are both 3-D). The rule, from the
    leaf's shape and the name of its module (the path's second-to-last component):

      - fewer than 2 dims (biases, norm scales): () -- one scale;
      - 3 dims [A, B, C] with A = B·C, or under a module named query, key or value: a DenseGeneral
        projection into heads [D, heads, head_dim] (the Conformer's query/key/value/position,
        Flax's attention) -- axes (1, 2), heads · head_dim scales;
      - anything else: the last axis -- Dense [in, out], the attention output projection
        [heads, head_dim, D], Conv [*window, in / groups, out] including depthwise [k, 1, C],
        LSTM [in, 4H], Embed [vocab, D] (a lookup is one_hot(token) @ E: its output channel is D).

    Give `Rule.channel_axes` where this is wrong, e.g. a DenseGeneral into heads whose
    heads · head_dim differs from its input width under another module name (where the rule would
    fall back to the last axis), or a 1-D conv whose window equals in · out (where it would give
    in · out scales). Embed rows (one scale per token) are `channel_axes=(0,)`.
    """
    ndim = len(shape)
    if ndim < 2:
        return ()
    module = path.split("/")[-2] if "/" in path else ""
    if ndim == 3 and (shape[0] == shape[1] * shape[2] or module in HEAD_PROJECTIONS):
        return (1, 2)
    return (ndim - 1,)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Quantize every leaf whose path full-matches `pattern` to `bits` bits.

    Attributes:
      pattern: regular expression, full-matched against the '/'-joined leaf path.
      bits: bits per weight, 1..8 (K = 2**bits centroids).
      granularity: "tensor" (one scale s = max|W|) or "channel" (one scale per index of the
        `channel_axes`, s = max|W| over the other axes).
      channel_axes: with granularity "channel", the axes that keep their own scale, for every leaf
        the rule matches (negative counts from the end; () is one scale). None, the default,
        takes each leaf's output axes by `default_channel_axes`:

          Dense [in, out]                         (1,)     out scales
          DenseGeneral [D, heads, head_dim]       (1, 2)   heads · head_dim scales (query/key/value)
          DenseGeneral [heads, head_dim, D]       (2,)     D scales (attention output)
          Conv [*window, in / groups, out]        (-1,)    out scales (depthwise [k, 1, C]: C)
          Embed [vocab, D], LSTM [in, 4H]         (1,)     D, 4H scales
          biases and other leaves of < 2 dims     ()       one scale
    """

    pattern: str
    bits: int
    granularity: str = "tensor"
    channel_axes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str):
            raise ValueError(f"Rule pattern must be a str, got {self.pattern!r}")
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise ValueError(f"Rule({self.pattern!r}): invalid regex: {err}") from None
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise ValueError(f"Rule({self.pattern!r}): bits must be an int in 1..8, got {self.bits!r}")
        if not 1 <= int(self.bits) <= 8:
            raise ValueError(f"Rule({self.pattern!r}): bits must be in 1..8, got {self.bits}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"Rule({self.pattern!r}): granularity must be one of {GRANULARITIES}, "
                f"got {self.granularity!r}"
            )
        if self.channel_axes is not None:
            axes = self.channel_axes
            if not isinstance(axes, (tuple, list)) or not all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
            ):
                raise ValueError(
                    f"Rule({self.pattern!r}): channel_axes must be None or a tuple of ints, got {axes!r}"
                )
            if self.granularity != "channel":
                raise ValueError(
                    f"Rule({self.pattern!r}): channel_axes={tuple(axes)} needs granularity='channel', "
                    f"got {self.granularity!r}"
                )
            object.__setattr__(self, "channel_axes", tuple(int(a) for a in axes))

    @property
    def num_centroids(self) -> int:
        return 2 ** int(self.bits)

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None

    def axes_for(self, path: str, shape: Sequence[int]) -> tuple[int, ...]:
        """The sorted, non-negative axes of leaf `path` (of `shape`) that keep their own scale:
        () for "tensor", `channel_axes` or `default_channel_axes` for "channel".

        Raises:
          ValueError naming the leaf and the rule when an explicit axis does not fit the leaf.
        """
        if self.granularity == "tensor":
            return ()
        if self.channel_axes is None:
            return default_channel_axes(path, shape)
        ndim = len(shape)
        axes = sorted(a % ndim for a in self.channel_axes if -ndim <= a < ndim)
        if len(axes) != len(self.channel_axes) or len(set(axes)) != len(axes):
            raise ValueError(
                f"leaf {path!r} of shape {tuple(shape)}: Rule({self.pattern!r}) has "
                f"channel_axes={self.channel_axes}, which are not distinct axes of a {ndim}-D leaf"
            )
        return tuple(axes)


@dataclasses.dataclass(frozen=True)
class GQConfig:
    """How GQ quantizes the leaves selected by `rules` (see GQ_METHOD.md for the maths).

    The defaults were put against their alternatives in RNN-T ablations at 2 and 4 bits (README,
    "Defaults, and the ablations behind them"): none of mu, distance, mode or init was beaten by
    more than the test set's noise; snapping the latent weights often (every 7 of 300 steps) was
    clearly worse.

    Attributes:
      rules: ordered rules; the first rule whose pattern matches a leaf's path decides its bits.
      mu: µ of the µ-law compander v = sign(u) ln(1 + µ|u|) / ln(1 + µ); 0 means no companding
        (the uniform quantizer). The default 8 fits bell-shaped weights far better than the
        telephony value 255 (`benchmarks/init_error.py`: at 4 bits the initial relative squared
        error of Gaussian weights is 0.013 at µ = 8 against 0.049 at µ = 255).
      distance: "sq" (d(x) = x²) or "abs" (d(x) = |x|) in a_k = softmax_k(-α d((v - c_k) / Δ)).
      mode: "ste" (hard forward, soft-assignment Jacobian backward) or "soft" (soft forward).
      estimator: the backward of the assignment (`gq_jax.assignment`): "soft_jacobian" (the
        Jacobian of the soft value ṽ at the forward α, for the latent weights and the centroids;
        with mode "soft" the exact gradient), "straight_through" (∂Ŵ/∂W = 1 for the latent weights,
        the soft Jacobian at α for the centroids) or "capped_alpha" (the soft Jacobian at
        min(α, backward_alpha) for both). The soft Jacobian in the weights vanishes away from the
        decision boundaries as α grows; the other two keep every weight's gradient
        (`benchmarks/gq_gradient.py`). The default "straight_through" gave the lowest test WER
        in the RNN-T estimator ablation at 4 and at 2 bits (README, "GQ's gradient estimator").
      backward_alpha: α_b, the backward sharpness cap of estimator "capped_alpha" (> 0). The
        default 5 is where the default α schedule starts, so the backward keeps the smoothness
        training began with (4 bits, α = 500: 99.6 % of the weights get >= 10 % of the upstream
        gradient, against 1.8 % with the soft Jacobian).
      window: centroids taken on each side of a weight's position in the sorted codebook
        (min(2 * window, K) in all, as separate [N] columns: memory O(N) whatever the bits);
        exact when 2 * window >= K. None uses the dense [N, K] form (the reference).
      init: centroid initialisation, "uniform" (grid over [-1, 1]), "kmeans" (1-D k-means of v),
        or "auto": k-means at 1-2 bits, where the uniform grid starts far off (at 1 bit it puts
        every weight at ±max|W|), and the uniform grid above.
      kmeans_iters: Lloyd iterations for init="kmeans".
      strict: raise in `init` when a rule matches no leaf (instead of only listing it in
        `unused_rules`).
    """

    rules: Sequence[Rule]
    mu: float = 8.0
    distance: str = "sq"
    mode: str = "ste"
    estimator: str = "straight_through"
    backward_alpha: float = 5.0
    window: int | None = 4
    init: str = "auto"
    kmeans_iters: int = 20
    strict: bool = False

    def init_for(self, bits: int) -> str:
        """The centroid initialisation used at `bits`: `init`, with "auto" resolved."""
        if self.init != "auto":
            return self.init
        return "kmeans" if bits <= 2 else "uniform"

    def __post_init__(self) -> None:
        rules = tuple(self.rules) if not isinstance(self.rules, Rule) else (self.rules,)
        for position, rule in enumerate(rules):
            if not isinstance(rule, Rule):
                raise ValueError(f"GQConfig.rules[{position}] must be a gq_jax.Rule, got {rule!r}")
        object.__setattr__(self, "rules", rules)
        if not isinstance(self.mu, (int, float)) or not math.isfinite(self.mu) or self.mu < 0:
            raise ValueError(f"GQConfig.mu must be a finite number >= 0, got {self.mu!r}")
        object.__setattr__(self, "mu", float(self.mu))
        for field, allowed in (("distance", DISTANCES), ("mode", MODES), ("estimator", ESTIMATORS),
                               ("init", INITS)):
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"GQConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}"
                )
        if isinstance(self.backward_alpha, bool) or not isinstance(self.backward_alpha, (int, float)) or not (
            math.isfinite(self.backward_alpha) and self.backward_alpha > 0
        ):
            raise ValueError(f"GQConfig.backward_alpha must be a finite number > 0, got {self.backward_alpha!r}")
        object.__setattr__(self, "backward_alpha", float(self.backward_alpha))
        if self.window is not None and (
            isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1
        ):
            raise ValueError(f"GQConfig.window must be None or an int >= 1, got {self.window!r}")
        if isinstance(self.kmeans_iters, bool) or not isinstance(self.kmeans_iters, int) or (
            self.kmeans_iters < 1
        ):
            raise ValueError(f"GQConfig.kmeans_iters must be an int >= 1, got {self.kmeans_iters!r}")


def path_to_str(path: Sequence[Any]) -> str:
    """'/'-joined names of a `jax.tree_util` key path: ('encoder', 'lstm_0', 'kernel')."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return "/".join(parts)


def leaves_with_paths(tree: Any, is_leaf=None) -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs of a pytree in flattening order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    for path, leaf in flat:
        yield path_to_str(path), leaf


def rule_for(path: str, config: GQConfig) -> Rule | None:
    """The first rule of `config` matching `path`, or None."""
    for rule in config.rules:
        if rule.matches(path):
            return rule
    return None


def unused_rules(params: Any, config: GQConfig) -> tuple[Rule, ...]:
    """Rules that are the first match of no leaf of `params` (a typo, or shadowed by a rule above).

    Returns:
      The unused rules in config order; empty when every rule quantizes at least one leaf.
    """
    used = {id(rule_for(path, config)) for path, _ in leaves_with_paths(params)}
    return tuple(rule for rule in config.rules if id(rule) not in used)


def check_no_unused_rules(params: Any, config: GQConfig) -> None:
    """Raise ValueError listing the unused rules when `config.strict` is set."""
    if config.strict:
        unused = unused_rules(params, config)
        if unused:
            patterns = ", ".join(repr(rule.pattern) for rule in unused)
            raise ValueError(f"GQConfig(strict=True): rules matching no leaf: {patterns}")


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """How one leaf will be quantized: `rule` is None for a leaf left in float."""

    path: str
    shape: tuple[int, ...]
    num_weights: int
    rule: Rule | None
    channel_axes: tuple[int, ...] = ()

    @property
    def num_scales(self) -> int:
        """Scales of the leaf: the product of its channel axes' sizes (1 per tensor)."""
        return math.prod(self.shape[a] for a in self.channel_axes)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Which leaf gets which bits, and how many weights; `str()` renders a table."""

    leaves: tuple[LeafPlan, ...]
    unused: tuple[Rule, ...]

    @property
    def quantized_weights(self) -> int:
        return sum(leaf.num_weights for leaf in self.leaves if leaf.rule is not None)

    @property
    def float_weights(self) -> int:
        return sum(leaf.num_weights for leaf in self.leaves if leaf.rule is None)

    def __str__(self) -> str:
        width = max([len(leaf.path) for leaf in self.leaves] + [4])
        lines = [f"{'leaf':<{width}}  {'shape':<16}  {'weights':>10}  {'bits':>5}  {'scales':>6}  rule"]
        for leaf in self.leaves:
            bits = "float" if leaf.rule is None else str(leaf.rule.bits)
            scales = "-" if leaf.rule is None else str(leaf.num_scales)
            rule = "-" if leaf.rule is None else f"{leaf.rule.pattern} ({leaf.rule.granularity})"
            lines.append(
                f"{leaf.path:<{width}}  {str(leaf.shape):<16}  {leaf.num_weights:>10}  {bits:>5}  "
                f"{scales:>6}  {rule}"
            )
        lines.append(
            f"{self.quantized_weights} weights quantized, {self.float_weights} left in float"
        )
        for rule in self.unused:
            lines.append(f"unused rule: {rule.pattern!r} matches no leaf")
        return "\n".join(lines)


def _plan(path: str, leaf: Any, config: GQConfig) -> LeafPlan:
    shape, rule = tuple(np.shape(leaf)), rule_for(path, config)
    axes = () if rule is None else rule.axes_for(path, shape)
    return LeafPlan(path, shape, int(np.size(leaf)), rule, axes)


def summary(params: Any, config: GQConfig) -> Summary:
    """The quantization plan of `params` under `config`: per leaf, its shape, size, rule and
    number of scales."""
    leaves = tuple(_plan(path, leaf, config) for path, leaf in leaves_with_paths(params))
    return Summary(leaves, unused_rules(params, config))
