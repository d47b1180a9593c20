"""Qwix QAT (Google's `qwix` library) as a training method: an adapter (`qat`) to the
`gq_jax.Quantizer` protocol plus the model wrapper Qwix needs, registered in training/config.py.

Qwix does not transform a parameter tree. It wraps a Flax linen model and, inside every module whose
path a `qwix.QtRule` matches, intercepts `lax.dot_general`, `jnp.einsum` and
`lax.conv_general_dilated`; an operand that is one of *that module's own* parameters is
fake-quantized in the forward pass (weight-only here, no activation quantization):

    s = max|W| / (2**(b-1) - 1/2)   over the weight's contracted axes (one scale per output channel:
                                     every non-contracted axis of a matmul kernel, the output-feature
                                     axis of a conv kernel), or over all of W for a "tensor" rule
    q = clip(round(W / s), -2**(b-1), 2**(b-1) - 1),   Ŵ = q · s

and the backward pass is straight-through for W (Qwix's default absmax calibration clips nothing);
the activation gradient uses the float W (Qwix's `use_original_residuals` when only the forward is
quantized). The scale is recomputed from W at every step; nothing else is learnt.

The bits come from `config.quant.rules` like every other method: an intercepted weight takes the
first rule matching its parameter path (bits 2..8 as Qwix's int2..int8, granularity "channel" as
above or "tensor"); a weight no rule matches stays float. Qwix rules select modules, so each module
holding intercepted weights gets one `QtRule` for its exact path, and the weights of one module must
share a rule.

What Qwix cannot see stays float whatever the rules say (`gq_jax.size_report(hardened).float_leaves`):
  - biases, LayerNorm scales and offsets, attention position biases, and the Conformer's
    `convolution/depthwise/kernel` (`models.conformer.DepthwiseConv1D`: K shifted multiply-adds):
    added or multiplied, never a matmul/conv operand;
  - `predictor/embedding/embedding`: a gather (`jnp.take`), not a matmul;
  - `joint/output/kernel`: the joint output layer runs as a pure closure (`JointNetwork.logits_fn`,
    so the chunked loss can call it inside `jax.checkpoint`/`lax.map`); at that matmul the current
    module is the `Transducer` (or `joint`), whose own parameters do not include it, so Qwix takes
    the kernel for an activation.
  - grouped convolutions (feature_group_count > 1, as the Conformer's depthwise convolution was
    before it became multiply-adds): Qwix 0.1.8's conv backward (`conv_general_qt_bwd`) computes the input gradient with the kernel's
    in/out feature axes swapped but not regrouped, which XLA rejects for any grouped conv ("lhs
    feature dimension size divided by feature_group_count must equal the rhs input feature
    dimension size"), so a rule for them could not train; no rule is given to their modules.
(The LSTM kernels are visible because `LSTMLayer` calls `lax.dot_general` on them; with `@` they
went through the jitted `jnp.matmul`, whose cached trace hides the call from Qwix, and coverage
depended on what had been traced before. The recurrent kernel is visible only with the layer's
autodiff recurrence, so Qwix wraps `models.transducer_parts.with_autodiff_recurrence(model)`: inside
the fused recurrence's custom VJP the kernel is no longer the module's own array, and Qwix's
fallback, matching by shape, cannot tell it from an input kernel of the same shape.)

The shipped model is the plain (unwrapped) model with `harden`'s weights: every intercepted weight
as a `gq_jax.QuantizedArray` whose codebook is Qwix's integer levels −2**(b-1) .. 2**(b-1) − 1 and
whose scale is Qwix's, so `gq_jax.dequantize` gives exactly the Ŵ the wrapped model computes with.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import qwix
from qwix._src.utils import flax_util  # Qwix's own "which module / which parameter" decisions

import gq_jax
from gq_jax.config import check_no_unused_rules, path_to_str, rule_for
from models.transducer_parts import with_autodiff_recurrence
from training import config as config_lib

MIN_BITS, MAX_BITS = 2, 8


def qtype(bits: int) -> str:
    """Qwix's name of the signed `bits`-bit integer type ("int4"), for bits in 2..8."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"Qwix QAT quantizes to {MIN_BITS}..{MAX_BITS} bits (int2..int8), got {bits}")
    return f"int{bits}"


def check_rules(rules: Sequence[tuple[str, int, str]]) -> None:
    """ValueError naming the first `config.quant.rules` entry whose bits Qwix cannot represent."""
    for rule in rules:
        try:
            qtype(int(rule[1]))
        except ValueError as err:
            raise ValueError(f"config.quant.rules entry {tuple(rule)!r} with quant.method='qwix': "
                             f"{err}") from None


@dataclasses.dataclass(frozen=True)
class Intercepted:
    """A parameter Qwix quantizes when a rule matches its module.

    `channel_axes` are the axes with their own scale (Qwix's channelwise axes for this use);
    `shape` is the operand's shape at the intercepted call (the parameter's own, checked on use).
    """

    module: str
    name: str
    shape: tuple[int, ...]
    channel_axes: tuple[int, ...]

    @property
    def path(self) -> str:
        return f"{self.module}/{self.name}" if self.module else self.name


class _Recorder(qwix.QtProvider):
    """A catch-all QtProvider that records every parameter operand Qwix can quantize and train
    (grouped convolutions excepted: see the module docstring)."""

    def __init__(self) -> None:
        super().__init__([qwix.QtRule(module_path=".*", weight_qtype=qtype(MAX_BITS))])
        self.seen: dict[str, Intercepted] = {}

    def _module_and_param(self, operand: Any) -> tuple[str, str | None]:
        module = "/".join(map(str, flax_util.get_current_module_path()))
        return module, flax_util.find_param(operand)

    def _record(self, operand: Any, channel_axes: Sequence[int]) -> None:
        module, name = self._module_and_param(operand)
        if name is not None:
            weight = Intercepted(module, name, tuple(operand.shape), tuple(channel_axes))
            self.seen[weight.path] = weight

    def dot_general(self, lhs, rhs, dimension_numbers, *args, **kwargs):
        (lhs_contracting, rhs_contracting), _ = dimension_numbers
        for operand, contracting in ((lhs, lhs_contracting), (rhs, rhs_contracting)):
            self._record(operand, [a for a in range(operand.ndim) if a not in contracting])
        return super().dot_general(lhs, rhs, dimension_numbers, *args, **kwargs)

    def conv_general_dilated(self, lhs, rhs, window_strides, padding, lhs_dilation=None,
                             rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                             batch_group_count=1, *args, **kwargs):
        if feature_group_count == 1 and batch_group_count == 1:  # grouped convs stay float: see above
            numbers = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            self._record(rhs, [numbers.rhs_spec[0]])  # Qwix: one scale per output feature
        return super().conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                            rhs_dilation, dimension_numbers, feature_group_count,
                                            batch_group_count, *args, **kwargs)

    def einsum(self, einsum_str, *operands, **kwargs):
        for operand in operands:
            module, name = self._module_and_param(operand)
            if name is not None:
                raise NotImplementedError(
                    f"Qwix QAT: einsum {einsum_str!r} over parameter {module}/{name}; only dot_general "
                    "and conv weights are supported (the shipped weights would not match Qwix's)")
        return super().einsum(einsum_str, *operands, **kwargs)


def example_inputs(num_mel_bins: int) -> tuple[jax.Array, ...]:
    """(features [1, 64, F], lengths [1], labels [1, 4], label lengths [1]): a forward's arguments."""
    return (jnp.zeros((1, 64, num_mel_bins), jnp.float32), jnp.array([64]),
            jnp.ones((1, 4), jnp.int32), jnp.array([4]))


def intercepted_weights(model: nn.Module, num_mel_bins: int) -> tuple[Intercepted, ...]:
    """Every parameter of `model` that Qwix fake-quantizes when a rule matches its module, by path.

    Found by tracing (shapes only) the training forward of `model` wrapped with a recording provider.
    """
    recorder = _Recorder()
    model = with_autodiff_recurrence(model)
    wrapped = qwix.quantize_model(model, recorder)
    inputs = example_inputs(num_mel_bins)
    variables = jax.eval_shape(model.init, jax.random.key(0), *inputs)
    jax.eval_shape(lambda v: wrapped.apply(v, *inputs), variables)
    return tuple(recorder.seen[path] for path in sorted(recorder.seen))


def qwix_rules(weights: Sequence[Intercepted], config: gq_jax.GQConfig) -> list[qwix.QtRule]:
    """One weight-only QtRule per module holding intercepted weights that a rule of `config` matches.

    Raises ValueError when the weights of one module take different rules (Qwix rules select
    modules, not parameters), a rule's bits are outside 2..8, or a rule's explicit
    `channel_axes` are not the axes Qwix scales for a weight (every non-contracted axis).
    """
    by_module: dict[str, dict[str, gq_jax.Rule | None]] = {}
    for weight in weights:
        rule = rule_for(weight.path, config)
        if rule is not None and rule.channel_axes is not None and (
                rule.axes_for(weight.path, weight.shape) != weight.channel_axes):
            raise ValueError(f"Qwix QAT: {weight.path} {weight.shape} takes Rule({rule.pattern!r}) "
                             f"with channel_axes={rule.channel_axes}, but Qwix scales its axes "
                             f"{weight.channel_axes}")
        by_module.setdefault(weight.module, {})[weight.path] = rule
    rules = []
    for module, chosen in by_module.items():
        kinds = {(r.bits, r.granularity) if r else None for r in chosen.values()}
        if len(kinds) > 1:
            raise ValueError(f"Qwix QAT: the weights of module {module!r} take different quant.rules "
                             f"{ {path: (r.pattern if r else None) for path, r in chosen.items()} }; "
                             "Qwix quantizes a module's weights alike")
        rule = next(iter(chosen.values()))
        if rule is not None:
            rules.append(qwix.QtRule(module_path=re.escape(module), weight_qtype=qtype(rule.bits),
                                     disable_channelwise_axes=rule.granularity == "tensor"))
    return rules


def wrap(model: nn.Module, config: gq_jax.GQConfig, num_mel_bins: int,
         weights: Sequence[Intercepted] | None = None) -> nn.Module:
    """`model` (with its LSTMs' autodiff recurrence) wrapped by Qwix QAT: its `__call__` (the
    training loss) fake-quantizes the weights `config`'s rules give bits to; parameters and their
    names are those of `model`. `weights`:
    `intercepted_weights(model, num_mel_bins)` when already known."""
    if weights is None:
        weights = intercepted_weights(model, num_mel_bins)
    rules = qwix_rules(weights, config)
    return qwix.quantize_model(with_autodiff_recurrence(model), qwix.QtProvider(rules))


def _trailing(scale: jax.Array) -> jax.Array:
    """Qwix's keep-dims scale without its leading size-1 axes ([1, C] -> [C]; [1, 1] -> [])."""
    shape = list(np.shape(scale))
    while shape and shape[0] == 1:
        shape.pop(0)
    return jnp.reshape(scale, shape)


@functools.partial(jax.jit, static_argnums=(1, 2))
def harden_weight(w: jax.Array, bits: int, channel_axes: tuple[int, ...]) -> gq_jax.QuantizedArray:
    """W as Qwix quantizes it: indices q + 2**(b-1), codebook the integers −2**(b-1)..2**(b-1) − 1,
    Qwix's float32 scale; `gq_jax.dequantize` gives Qwix's Ŵ = q · s bit for bit."""
    quantized = qwix.quantize(w, qtype(bits), channelwise_axes=channel_axes)
    low = -(2 ** (bits - 1))
    return gq_jax.QuantizedArray(
        indices=(quantized.qvalue.astype(jnp.int32) - low).astype(jnp.uint8),
        codebook=jnp.arange(low, -low, dtype=jnp.float32),
        scale=_trailing(quantized.scale).astype(jnp.float32),
        bits=bits,
        shape=tuple(w.shape),
        dtype=str(w.dtype),
    )


def harden(params: Any, weights: Sequence[Intercepted], config: gq_jax.GQConfig) -> Any:
    """The shipped tree: intercepted weights with a rule as QuantizedArray (`harden_weight`), every
    other leaf unchanged. Decoding the unwrapped model with `gq_jax.dequantize` of it equals the
    wrapped model's forward."""
    by_path = {weight.path: weight for weight in weights}

    def visit(keys: Any, leaf: Any) -> Any:
        path = path_to_str(keys)
        weight = by_path.get(path)
        rule = rule_for(path, config) if weight else None
        if rule is None:
            return leaf
        if tuple(np.shape(leaf)) != weight.shape:
            raise ValueError(f"Qwix QAT: {path} has shape {np.shape(leaf)} but Qwix multiplies it as "
                             f"{weight.shape}; a reshaped weight is not supported")
        return harden_weight(jnp.asarray(leaf), rule.bits,
                             () if rule.granularity == "tensor" else weight.channel_axes)

    return jax.tree_util.tree_map_with_path(visit, params)


def qat(config: gq_jax.GQConfig, model: nn.Module, num_mel_bins: int, *, snap_every: int = 0
        ) -> config_lib.Method:
    """Qwix QAT as a training method: `model` wrapped by Qwix (`wrap`: the training loss's forward
    fake-quantizes), and a `gq_jax.Quantizer` with no state whose `apply` passes the parameters
    through unchanged, whose `update` snaps every `snap_every` steps (0: never) and whose `harden`
    is `harden` above. A rule matching no parameter is an error in `init` (GQConfig.strict), as for
    the other methods."""
    weights = intercepted_weights(model, num_mel_bins)
    harden_fn = lambda params, state: harden(params, weights, config)

    def init(params: Any) -> gq_jax.QuantState:
        check_no_unused_rules(params, config)
        return gq_jax.QuantState({})

    quantizer = gq_jax.Quantizer(init=init, apply=lambda params, state, step: params,
                                 update=gq_jax.snapping(harden_fn, config, snap_every), harden=harden_fn)
    return config_lib.Method(quantizer, wrap(model, config, num_mel_bins, weights))
