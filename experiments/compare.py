"""Paired comparison of two scored systems from their JSON files (`experiments.statistics`).

    python -m experiments.compare A.json:KEY/KEY... B.json:KEY/KEY... [--resamples 2000] [--seed 0]

Each side names a JSON file and the path of keys, '/'-separated, to one system's scores on one
split: a dict with the per-utterance counts `utterance_errors` and `utterance_words` (eval.json of
a workdir: `SPLIT/MODEL`, e.g. `runs/demo/gq4/eval.json:test/quantized`; experiments.run's
results/SCALE/NAME/eval.json: `DECODE/SPLIT`, e.g. `greedy/test`; scripts/demo.py's scores.json:
the row name). Prints WER_A, WER_B and WER_B − WER_A with its paired bootstrap 95 % interval over
the utterances, which must be the same ones in the same order.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

from experiments import statistics


def scores_at(spec: str) -> dict[str, Any]:
    """The scores dict that `spec` ('PATH:KEY/KEY...') names; ValueError naming the missing key."""
    path, sep, keys = spec.rpartition(":")
    if not sep or not path:
        raise ValueError(f"{spec!r}: expected PATH:KEY/KEY..., e.g. runs/demo/gq4/eval.json:test/quantized")
    node: Any = json.loads(pathlib.Path(path).read_text())
    for key in keys.split("/"):
        if not isinstance(node, dict) or key not in node:
            options = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"{spec!r}: no key {key!r} in {path} (there: {options})")
        node = node[key]
    if not isinstance(node, dict) or statistics.UTTERANCE_ERRORS not in node:
        raise ValueError(f"{spec!r} holds no per-utterance counts ({statistics.UTTERANCE_ERRORS}); "
                         "score it again with this version's eval.py")
    return node


def compare(spec_a: str, spec_b: str, resamples: int = statistics.RESAMPLES,
            seed: int = statistics.SEED) -> statistics.WerDifference:
    """B against A, paired over their utterances."""
    a, b = scores_at(spec_a), scores_at(spec_b)
    keys = (statistics.UTTERANCE_ERRORS, statistics.UTTERANCE_WORDS)
    if len(a[keys[0]]) != len(b[keys[0]]):
        raise ValueError(f"{spec_a!r} has {len(a[keys[0]])} utterances, {spec_b!r} {len(b[keys[0]])}: "
                         "a paired comparison needs the same utterances")
    return statistics.paired_bootstrap(*(a[k] for k in keys), *(b[k] for k in keys),
                                       resamples=resamples, seed=seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="PATH:KEY/KEY... of system A (the reference)")
    parser.add_argument("b", help="PATH:KEY/KEY... of system B")
    parser.add_argument("--resamples", type=int, default=statistics.RESAMPLES)
    parser.add_argument("--seed", type=int, default=statistics.SEED)
    args = parser.parse_args(argv)
    try:
        result = compare(args.a, args.b, args.resamples, args.seed)
    except (ValueError, OSError) as e:
        sys.exit(f"experiments.compare: error: {e}")
    print(f"A {args.a}: WER {100 * result.wer_a:.2f} %\nB {args.b}: WER {100 * result.wer_b:.2f} %\n"
          f"B - A over {result.utterances} utterances: {statistics.describe(result)}")


if __name__ == "__main__":
    main()
