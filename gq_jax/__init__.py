"""gq_jax: sub-8-bit quantization-aware training with GQ, the General Quantizer.

A method is a `Quantizer` of pure functions over parameter pytrees, built by a function that binds
its hyper-parameters (optax-style):

    quantizer = gq_jax.gq(config, alpha=schedule, snap_every=0)  # or uniform_ste, ptq_*, identity
    state = quantizer.init(params)                               # learnable centroids per leaf
    q = quantizer.apply(params, state, step)                     # differentiable, inside the loss
    state, params = quantizer.update(state, params, step + 1)    # after each optimizer update
    hardened, dequantized, sizes = gq_jax.export(quantizer, params, state)
    gq_jax.save_packed("model.gqpk", hardened)                   # b bits per weight on disk

The functions underneath (`init`, `quantize_params`, `project_centroids`, `snap`, `harden`) take
the `GQConfig` explicitly and stay public.
"""

from gq_jax import baselines, schedules
from gq_jax.artifact import (
    QuantizedArray,
    SizeReport,
    dequantize,
    harden,
    size_report,
)
from gq_jax.companding import compress, expand
from gq_jax.config import GQConfig, Rule, Summary, default_channel_axes, summary, unused_rules
from gq_jax.methods import (
    Export,
    Quantizer,
    export,
    gq,
    identity,
    ptq_kmeans,
    ptq_round,
    snapping,
    uniform_ste,
)
from gq_jax.packed import FORMAT_VERSION, load_packed, pack_bits, save_packed, unpack_bits
from gq_jax.quantizer import QuantState, init, project_centroids, quantize_params, snap, snap_to

__all__ = [
    "Export",
    "FORMAT_VERSION",
    "GQConfig",
    "QuantState",
    "QuantizedArray",
    "Quantizer",
    "Rule",
    "SizeReport",
    "Summary",
    "baselines",
    "compress",
    "default_channel_axes",
    "dequantize",
    "expand",
    "export",
    "gq",
    "harden",
    "identity",
    "init",
    "load_packed",
    "pack_bits",
    "project_centroids",
    "ptq_kmeans",
    "ptq_round",
    "quantize_params",
    "save_packed",
    "schedules",
    "size_report",
    "snap",
    "snap_to",
    "snapping",
    "summary",
    "uniform_ste",
    "unpack_bits",
    "unused_rules",
]
