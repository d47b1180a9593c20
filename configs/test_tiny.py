"""A seconds-long run on the `tiny` synth-en corpus, for tests: set `data.path` on the command line."""

from configs import default


def get_config():
    config = default.get_config()
    config.data.path = ""
    config.data.num_buckets = 1
    # Load in the training process: starting grain workers costs seconds per run. The workers are
    # exercised by tests/test_batching.py and by the SIGKILL-resume test, which sets 2.
    config.data.num_workers = 0
    config.data.max_dev_examples = 4
    config.features.num_mel_bins = 16
    config.model.encoder_layers = 1
    config.model.encoder_hidden_size = 16
    config.model.frame_stack = 4
    config.model.time_reduction_layer = None
    config.model.predictor_embed_dim = 8
    config.model.predictor_hidden_size = 16
    config.model.joint_dim = 16
    config.optim.warmup_steps = 2
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_train_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 6
    config.checkpoint_every_steps = 2
    config.keep_checkpoints = 10
    config.quant.alpha.end_step = 6
    return config
