"""How much gradient GQ's latent weights receive, per gradient estimator and sharpness α.

Through the public API: a [256, 256] N(0, 1) kernel at 4 bits, one scale per output channel,
mode "ste" (hard forward), loss = Σ g · Q(W) with g ~ N(0, 1), so ∂L/∂Ŵ = g is the upstream
gradient and ∂L/∂W is what the estimator passes to the latent weights. For each estimator of
`gq_jax.GQConfig.estimator` and α = 5, 50, 500 it prints

  share >= 10 %   the share of latent weights with |∂L/∂W| >= 0.1 |g|
  max ratio       max |∂L/∂W| / |g| (spikes at decision boundaries enter the global-norm clip)
  median ratio    the median of |∂L/∂W| / |g|
  centroid norm   ‖∂L/∂c‖ of the kernel's one codebook (16 centroids; the scales are per channel)

    python benchmarks/gq_gradient.py [--backward-alpha 5 --backward-alpha 10 ...]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import gq_jax

ALPHAS = (5.0, 50.0, 500.0)
SHAPE = (256, 256)
BITS = 4


def gradient_ratios(config: gq_jax.GQConfig, alpha: float, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(|∂L/∂W| / |g| per weight [256 · 256], ∂L/∂c [16]) for loss = Σ g · Q(W)."""
    w_key, g_key = jax.random.split(jax.random.key(seed))
    params = {"layer": {"kernel": jax.random.normal(w_key, SHAPE)}}
    upstream = jax.random.normal(g_key, SHAPE)
    state = gq_jax.init(params, config)

    def loss(params, state):
        quantized = gq_jax.quantize_params(params, state, config, alpha)
        return jnp.vdot(upstream, quantized["layer"]["kernel"])

    grad_w, grad_state = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, state)
    ratio = np.abs(np.asarray(grad_w["layer"]["kernel"])) / np.abs(np.asarray(upstream))
    return ratio.ravel(), np.asarray(grad_state.centroids["layer/kernel"])


def configs(backward_alphas: list[float]) -> dict[str, gq_jax.GQConfig]:
    """{label: GQConfig} of every estimator (capped_alpha once per α_b)."""
    rules = [gq_jax.Rule(".*kernel", BITS, "channel")]
    out = {name: gq_jax.GQConfig(rules, estimator=name) for name in ("soft_jacobian", "straight_through")}
    for cap in backward_alphas:
        out[f"capped_alpha α_b={cap:g}"] = gq_jax.GQConfig(rules, estimator="capped_alpha", backward_alpha=cap)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backward-alpha", type=float, action="append", default=None,
                        help="α_b of capped_alpha (repeatable; default 5, 10 and 20)")
    args = parser.parse_args()
    backward_alphas = args.backward_alpha or [5.0, 10.0, 20.0]
    print(f"kernel {SHAPE} N(0, 1), {BITS} bits per channel, mode ste, µ = {gq_jax.GQConfig.mu:g}, "
          f"window {gq_jax.GQConfig.window}; loss = sum g * Q(W), g ~ N(0, 1); device {jax.devices()[0]}")
    print(f"{'estimator':<24} {'alpha':>6} {'share >= 10 %':>14} {'max ratio':>10} {'median ratio':>13} "
          f"{'centroid grad norm':>19}")
    for label, config in configs(backward_alphas).items():
        for alpha in ALPHAS:
            ratio, grad_c = gradient_ratios(config, alpha)
            print(f"{label:<24} {alpha:>6g} {100 * np.mean(ratio >= 0.1):>13.1f}% {ratio.max():>10.2f} "
                  f"{np.median(ratio):>13.3g} {np.linalg.norm(grad_c):>19.4g}")


if __name__ == "__main__":
    main()
