"""The synth-en `large` recipes start: each trains and evaluates on the tiny corpus.

Shrunk for CI time, and only these fields: data.path (the tiny corpus instead of `large`),
data.max_batch_seconds 8 (the tiny corpus's 40 training utterances), data.max_dev_examples 4,
eval_batch_size 4, num_train_steps 2 with evaluation and a checkpoint at step 2, warm-up 1 step,
and the encoder's depth to 2 layers (widths kept). The tokenizer, SpecAugment, speed
perturbation and CTC weight are the recipe's; the Conformer's CTC head is also scored.
"""

import importlib

import pytest

import eval as eval_cmd
from training import checkpoints, metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rnnt_synth_large", "conformer_synth_large"])
def test_the_large_recipe_trains_and_evaluates(name, tiny_corpus, tmp_path):
    import train

    config = importlib.import_module(f"configs.{name}").get_config()
    config.data.path = str(tiny_corpus)
    config.data.max_batch_seconds = 8.0
    config.data.max_dev_examples = 4
    config.eval_batch_size = 4
    config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
    config.optim.warmup_steps = 1
    config.model.encoder_layers = 2  # the compile time of 5 LSTM / 8 Conformer layers is CI time
    train.train_and_evaluate(config, str(tmp_path))
    assert checkpoints.manager(tmp_path, create=False).latest_step() == 2
    record = metrics.read(tmp_path)[-1]
    assert record["step"] == 2 and 0 <= record["dev_wer"]
    # A recipe with a CTC head decodes with it too (eval.py --decoder ctc).
    if config.model.get("ctc_weight", 0) > 0:
        scored = eval_cmd.evaluate_run(str(tmp_path), splits=["test"], max_examples=4, ctc=True)
        assert scored["decoder"] == "ctc" and scored["results"]["test"]["float"]["num_words"] > 0
