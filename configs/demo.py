"""The `make demo` float model: a small RNN-T on the `small` synth-en corpus, ~10 min on 2 CPU cores.

Fine-tune it with GQ at 4 bits with
`--config.quant.method=gq --config.quant.init_from=WORKDIR_OF_THE_FLOAT_RUN` (see scripts/demo.py).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.path = "data/synth-en-small"
    config.data.max_dev_examples = 48
    config.model.encoder_layers = 2
    config.model.encoder_hidden_size = 96
    config.model.frame_stack = 3
    config.model.time_reduction_layer = 0
    config.model.predictor_hidden_size = 64
    config.model.predictor_embed_dim = 32
    config.model.joint_dim = 96
    config.optim.learning_rate = 3e-3
    config.optim.warmup_steps = 50
    config.batch_size = 16
    config.num_train_steps = 3000
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 500
    config.quant.rules = ((r".*kernel", 4, "channel"),)
    config.quant.alpha.end_step = 300
    config.quant.snap_every = 0
    return config
