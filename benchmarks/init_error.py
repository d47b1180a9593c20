"""Quantization error at initialisation: how well GQ's starting codebook fits typical weights.

For Gaussian and Laplacian tensors (1000 x 256, per-channel scale) at 1-8 bits, prints the
relative squared error ||Ŵ − W||² / ||W||² of the hard GQ values right after `gq_jax.init`, for
the uniform grid in the µ-law space at several µ, and for k-means init, next to uniform symmetric
round-to-nearest (`ptq_round`) measured in the same run. Training moves the centroids from there;
a better start is what the `mu` and `init` defaults are chosen for.

    python benchmarks/init_error.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gq_jax

MUS = (0.0, 4.0, 8.0, 16.0, 64.0, 255.0)
BITS = (1, 2, 3, 4, 5, 8)


def relative_error(w: jax.Array, q: jax.Array) -> float:
    return float(jnp.sum((q - w) ** 2) / jnp.sum(w**2))


def gq_error(params: dict, bits: int, **config_fields) -> float:
    config = gq_jax.GQConfig([gq_jax.Rule("w", bits, "channel")], **config_fields)
    state = gq_jax.init(params, config)
    return relative_error(params["w"], gq_jax.quantize_params(params, state, config, 1.0, hard=True)["w"])


def ptq_round_error(params: dict, bits: int) -> float:
    config = gq_jax.GQConfig([gq_jax.Rule("w", bits, "channel")])
    method = gq_jax.ptq_round(config)
    return relative_error(params["w"], gq_jax.export(method, params, method.init(params)).params["w"])


def main() -> None:
    key = jax.random.key(0)
    tensors = {
        "gaussian": jax.random.normal(key, (1000, 256)),
        "laplacian": jax.random.laplace(key, (1000, 256)),
    }
    header = " ".join(f"{'µ=' + str(int(mu)):>8}" for mu in MUS)
    for name, w in tensors.items():
        params = {"w": w}
        print(f"\n{name} weights: relative squared error of the hard values at init")
        print(f"{'bits':>4} {header} {'kmeans µ=8':>11} {'ptq_round':>10}")
        for bits in BITS:
            uniform = " ".join(f"{gq_error(params, bits, mu=mu):8.5f}" for mu in MUS)
            kmeans = gq_error(params, bits, mu=8.0, init="kmeans")
            print(f"{bits:>4} {uniform} {kmeans:11.5f} {ptq_round_error(params, bits):10.5f}")


if __name__ == "__main__":
    main()
