"""The training state pytree and its optimizer.

`TrainState(step, params, quant, opt_state, rng)`: `params` are the latent (float) network
weights, `quant` the quantizer's state (`quantizer.init(params)`, a pytree: GQ's learnable
centroids, fixed codebooks for uniform STE, an empty `gq_jax.QuantState` for float, PTQ and Qwix),
`opt_state` the optax state of the pair
`(params, quant)`, `rng` the base PRNG key (raw uint32 key data, so it checkpoints as an array).
The step's randomness is `fold_in(rng, step)`, so a resumed run draws the same numbers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class TrainState(NamedTuple):
    step: jax.Array  # [] int32, optimizer updates done
    params: Any
    quant: Any  # the quantizer's state
    opt_state: Any
    rng: jax.Array  # [2] uint32 raw key data


def learning_rate_schedule(optim: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate` over `warmup_steps`, then cosine decay to
    `learning_rate * end_learning_rate_fraction` at `num_train_steps`."""
    return optax.warmup_cosine_decay_schedule(
        0.0, optim.learning_rate, max(optim.warmup_steps, 1), max(num_train_steps, optim.warmup_steps + 1),
        end_value=optim.learning_rate * optim.end_learning_rate_fraction)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """`optax.partition` of `(params, quant)`: the weights get clipped AdamW on the warm-up/cosine
    schedule; the quantizer's state (GQ's centroids) gets `config.quant.centroid_optimizer` at its
    own learning rate."""
    weights = optax.chain(
        optax.clip_by_global_norm(config.optim.grad_clip_norm),
        optax.adamw(learning_rate_schedule(config.optim, config.num_train_steps),
                    weight_decay=config.optim.weight_decay))
    make_centroid_optimizer = getattr(optax, config.quant.centroid_optimizer, None)
    if make_centroid_optimizer is None:
        raise ValueError(f"config.quant.centroid_optimizer={config.quant.centroid_optimizer!r} is "
                         "not an optax optimizer")
    centroids = make_centroid_optimizer(config.quant.centroid_learning_rate)

    def labels(trainable):
        params, quant = trainable
        return (jax.tree_util.tree_map(lambda _: "weights", params),
                jax.tree_util.tree_map(lambda _: "centroids", quant))

    return optax.partition({"weights": weights, "centroids": centroids}, labels)


def create(params: Any, quant: Any, optimizer: optax.GradientTransformation,
           seed: int) -> TrainState:
    """A fresh state at step 0."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, quant=quant,
                      opt_state=optimizer.init((params, quant)),
                      rng=jax.random.key_data(jax.random.key(seed)))


def random_params(model: Any, config: ml_collections.ConfigDict) -> Any:
    """Parameters initialised from `config.seed` (shapes from a dummy 64-frame batch)."""
    feats = jnp.zeros((1, 64, config.features.num_mel_bins), jnp.float32)
    return jax.jit(model.init)(jax.random.key(config.seed), feats, jnp.array([64]),
                               jnp.ones((1, 4), jnp.int32), jnp.array([4]))["params"]


def replicate(tree: Any) -> Any:
    """Copies of every leaf stacked over the local devices, `[n_devices, ...]`, with the sharding
    `pmap` gives its outputs (so feeding a step's output back in does not recompile it)."""
    devices = jax.local_devices()
    sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)), sharding),
        tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of every leaf (on the host)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x[0]), tree)
