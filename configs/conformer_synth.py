"""Conformer transducer on the `full` synth-en corpus."""

from configs import default


def get_config():
    config = default.get_config()
    config.data.path = "data/synth-en-full"
    config.model = default.model_config(config.model,
        name="conformer", encoder_layers=6, model_dim=144, num_heads=4, ff_multiplier=4,
        conv_kernel_size=15, subsampling_channels=144, dropout_rate=0.1,
        predictor_embed_dim=64, predictor_hidden_size=320, joint_dim=320)
    config.features.spec_augment = True
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 1000
    config.batch_size = 32
    config.num_train_steps = 30000
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 1000
    # "channel": one scale per output channel (gq_jax.default_channel_axes): per (head, head_dim) for
    # the attention's query/key/value/position kernels, per output for the rest (convs included).
    config.quant.rules = ((r"encoder/.*kernel", 4, "channel"), (r".*kernel", 8, "channel"))
    config.quant.alpha.end_step = 5000
    return config
