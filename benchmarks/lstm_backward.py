"""What the fused LSTM backward (`models.transducer_parts.lstm_recurrence`) saves a recipe's train
step: the recipe's model against `with_autodiff_recurrence` of it (JAX's transpose of the scan), in
one run.

    python benchmarks/lstm_backward.py --corpus data/synth-en-large [--config rnnt_synth_large]
        [--repeats 10] [--set FIELD=VALUE ...]

On the first batch of the plan's most common shape, with random weights, the real pmapped train
step (`benchmarks.train_step.real_train_step`) is built for both models (same parameters) and the
two are timed in turn, `--repeats` rounds, so that a change in the machine's load reaches both; it
prints each one's median step time and, per round, its ratio to the autodiff step (median and
range over the rounds). Every model has LSTMs: the prediction network's; the RNN-T's encoder too.
Run it on an otherwise idle machine: every figure is a time.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from benchmarks.recipe import (load_recipe, most_common_batch, parse_step_ratio_args, print_ratios,  # noqa: E402
                               timed_rounds)
from benchmarks.train_step import real_train_step  # noqa: E402
from models.transducer_parts import with_autodiff_recurrence  # noqa: E402
from training import state as state_lib  # noqa: E402

AUTODIFF, FUSED = "autodiff scan", "fused backward"


def compiled_steps(name: str, corpus: pathlib.Path, overrides: list[tuple[str, Any]]
                   ) -> dict[str, Callable[[], Any]]:
    """The recipe's train step with the autodiff and the fused LSTM backward, each run once (so compiled)."""
    recipe = load_recipe(name, corpus, overrides)
    batch = most_common_batch(recipe)[0]()
    params = state_lib.random_params(recipe.model, recipe.config)
    steps = {AUTODIFF: real_train_step(recipe.config, with_autodiff_recurrence(recipe.model), params, batch),
             FUSED: real_train_step(recipe.config, recipe.model, params, batch)}
    for step in steps.values():
        jax.block_until_ready(step())
    return steps


def main() -> None:
    args, overrides = parse_step_ratio_args(__doc__, "rnnt_synth_large")
    seconds = timed_rounds(compiled_steps(args.config, args.corpus, overrides), args.repeats)
    print(f"{args.config}: train step on {jax.devices()[0].platform}, {args.repeats} rounds")
    print_ratios(seconds, AUTODIFF, "LSTM backward", "autodiff")


if __name__ == "__main__":
    main()
