"""GQ fine-tuning of a published float model on synth-en `large_demo` (`make demo`, scripts/demo.py).

    python train.py --config configs/demo_gq.py --workdir runs/demo/gq4
    python train.py --config configs/demo_gq.py:results/models/OTHER --workdir runs/demo/gq4 \
        --config.quant.rules='((".*(kernel|embedding)", 2, "channel"),)'

The model, features and tokenizer are the published model's own (its config.json, so the
architecture always fits its weights), and the run starts from its weights (`quant.init_from`, which
also hands it the tokenizer). The quantizer's settings are the library's (configs/default.py, e.g.
the centroid learning rate 1e-4), not those saved with the published model, which record how it
was trained. It fine-tunes on the 2,000 training utterances of `large_demo` (the
first ones of `large`'s training split) at 4 bits per channel on every weight matrix and embedding,
with the sharpness annealed 5 -> 500 over the first half, and the straight-through gradient for
the latent weights (`quant.estimator`): in the demo's own comparison of GQ's estimators
(`scripts/demo.py --estimators soft_jacobian,straight_through,capped_alpha`, README) it gave the
lowest WER at 4 and at 2 bits, and the only 4-bit row within the paired noise of float.
"""

from configs import default
from training import checkpoints

PUBLISHED = "results/models/rnnt_synth_large"
WEIGHTS = r".*(kernel|embedding)"


def get_config(published: str = PUBLISHED):
    config = checkpoints.load_config(published)
    # head fields added since the model was published keep their defaults (the same model)
    config.model = default.model_config(default.get_config().model, **config.model)
    config.data.path = "data/synth-en-large-demo"
    config.data.max_dev_examples = 200
    config.data.max_batch_seconds = 32.0
    config.quant = default.get_config().quant
    config.quant.method = "gq"
    config.quant.init_from = published
    config.quant.rules = ((WEIGHTS, 4, "channel"),)
    config.quant.alpha.schedule = "exponential"
    config.quant.alpha.start = 5.0
    config.quant.alpha.end = 500.0
    config.quant.alpha.end_step = 100
    config.quant.estimator = "straight_through"
    config.quant.snap_every = 0
    config.optim.learning_rate = 3e-4
    config.optim.warmup_steps = 10
    config.num_train_steps = 200
    config.log_every_steps = 50
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 100
    return config
