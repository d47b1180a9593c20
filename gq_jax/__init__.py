"""gq_jax: sub-8-bit quantization-aware training with GQ, the General Quantizer.

Pure functions over parameter pytrees:

    state = gq_jax.init(params, config)                       # learnable centroids per leaf
    q = gq_jax.quantize_params(params, state, config, alpha)  # differentiable, inside the loss
    state = gq_jax.project_centroids(state)                   # after each optimizer update
    hardened = gq_jax.harden(params, state, config)           # QuantizedArray leaves
    gq_jax.save_packed("model.gqpk", hardened)                # b bits per weight on disk
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
from gq_jax.methods import METHODS, Quantizer, get_method
from gq_jax.packed import FORMAT_VERSION, load_packed, pack_bits, save_packed, unpack_bits
from gq_jax.quantizer import QuantState, init, project_centroids, quantize_params, snap, snap_to

__all__ = [
    "FORMAT_VERSION",
    "GQConfig",
    "METHODS",
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
    "get_method",
    "harden",
    "init",
    "load_packed",
    "pack_bits",
    "project_centroids",
    "quantize_params",
    "save_packed",
    "schedules",
    "size_report",
    "snap",
    "snap_to",
    "summary",
    "unpack_bits",
    "unused_rules",
]
