"""What dropout costs a recipe's train step: `models.dropout.Dropout` (four elements per threefry
word) against `flax.linen.Dropout` (one word per element) and against no dropout, in one run.

    python benchmarks/dropout.py --corpus data/synth-en-large [--config conformer_synth_large]
        [--repeats 10] [--set FIELD=VALUE ...]

On the first batch of the plan's most common shape, with random weights, the real pmapped train
step (`benchmarks.train_step.real_train_step`) is built three times: with the models' Dropout, with
`flax.linen.Dropout` in its place, and with `model.dropout_rate=0`. The three are timed in turn,
`--repeats` rounds, so that a change in the machine's load reaches all of them; it prints each
one's median step time and, per round, the ratio of each to flax's dropout step (median and range
over the rounds). `--set` overrides config fields of all three (e.g. `model.dropout_rate=0.2`).
Run it on an otherwise idle machine: every figure is a time.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
from typing import Any, Callable, Iterator, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402

from benchmarks.recipe import (load_recipe, most_common_batch, parse_step_ratio_args, print_ratios,  # noqa: E402
                               timed_rounds)
from benchmarks.train_step import real_train_step  # noqa: E402
from models import conformer, rnnt  # noqa: E402
from training import state as state_lib  # noqa: E402

MODULES_WITH_DROPOUT = (conformer, rnnt)


@contextlib.contextmanager
def flax_dropout() -> Iterator[None]:
    """Models traced inside use `flax.linen.Dropout` (same call signature) instead of models.dropout's."""
    saved = [module.Dropout for module in MODULES_WITH_DROPOUT]
    for module in MODULES_WITH_DROPOUT:
        module.Dropout = nn.Dropout
    try:
        yield
    finally:
        for module, original in zip(MODULES_WITH_DROPOUT, saved):
            module.Dropout = original


def compiled_step(name: str, corpus: pathlib.Path, overrides: Sequence[tuple[str, Any]], use_flax: bool
                  ) -> Callable[[], Any]:
    """The recipe's train step (with `overrides`) on its most common batch, traced and run once (so
    compiled), with flax's dropout when `use_flax`."""
    recipe = load_recipe(name, corpus, overrides)
    batch = most_common_batch(recipe)[0]()
    params = state_lib.random_params(recipe.model, recipe.config)
    step = real_train_step(recipe.config, recipe.model, params, batch)
    with flax_dropout() if use_flax else contextlib.nullcontext():
        jax.block_until_ready(step())
    return step


def main() -> None:
    args, overrides = parse_step_ratio_args(__doc__, "conformer_synth_large")
    rate = load_recipe(args.config, args.corpus, overrides).config.model.get("dropout_rate", 0.0)
    if not rate:
        raise SystemExit(f"benchmarks/dropout.py: configs/{args.config}.py has no dropout "
                         f"(model.dropout_rate={rate}); pick a config that uses it or --set it")
    no_dropout = [*overrides, ("model.dropout_rate", 0.0)]
    steps = {"flax.linen.Dropout": compiled_step(args.config, args.corpus, overrides, use_flax=True),
             "models.dropout.Dropout": compiled_step(args.config, args.corpus, overrides, use_flax=False),
             "no dropout": compiled_step(args.config, args.corpus, no_dropout, use_flax=False)}
    seconds = timed_rounds(steps, args.repeats)
    print(f"{args.config}: dropout rate {rate}, train step on {jax.devices()[0].platform}, "
          f"{args.repeats} rounds")
    print_ratios(seconds, "flax.linen.Dropout", "dropout", "flax")


if __name__ == "__main__":
    main()
