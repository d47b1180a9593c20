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
DISTANCES = ("sq", "abs")
INITS = ("auto", "uniform", "kmeans")


@dataclasses.dataclass(frozen=True)
class Rule:
    """Quantize every leaf whose path full-matches `pattern` to `bits` bits.

    Attributes:
      pattern: regular expression, full-matched against the '/'-joined leaf path.
      bits: bits per weight, 1..8 (K = 2**bits centroids).
      granularity: "tensor" (one scale s = max|W|) or "channel" (one scale per index of the last
        axis, the output channel of a Flax kernel; leaves with fewer than 2 dims use one scale).
    """

    pattern: str
    bits: int
    granularity: str = "tensor"

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

    @property
    def num_centroids(self) -> int:
        return 2 ** int(self.bits)

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None


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
        for field, allowed in (("distance", DISTANCES), ("mode", MODES), ("init", INITS)):
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"GQConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}"
                )
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
        lines = [f"{'leaf':<{width}}  {'shape':<16}  {'weights':>10}  {'bits':>4}  rule"]
        for leaf in self.leaves:
            bits = "float" if leaf.rule is None else str(leaf.rule.bits)
            rule = "-" if leaf.rule is None else f"{leaf.rule.pattern} ({leaf.rule.granularity})"
            lines.append(
                f"{leaf.path:<{width}}  {str(leaf.shape):<16}  {leaf.num_weights:>10}  {bits:>5}  {rule}"
            )
        lines.append(
            f"{self.quantized_weights} weights quantized, {self.float_weights} left in float"
        )
        for rule in self.unused:
            lines.append(f"unused rule: {rule.pattern!r} matches no leaf")
        return "\n".join(lines)


def summary(params: Any, config: GQConfig) -> Summary:
    """The quantization plan of `params` under `config`: per leaf, its shape, size and rule."""
    leaves = tuple(
        LeafPlan(path, tuple(np.shape(leaf)), int(np.size(leaf)), rule_for(path, config))
        for path, leaf in leaves_with_paths(params)
    )
    return Summary(leaves, unused_rules(params, config))
