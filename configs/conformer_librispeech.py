"""Conformer transducer on LibriSpeech 960 h (TFDS), sized for one GPU/TPU host."""

from configs import default, rnnt_librispeech


def get_config():
    config = rnnt_librispeech.get_config()
    config.model = default.model_config(config.model,
        name="conformer", encoder_layers=16, model_dim=256, num_heads=4, ff_multiplier=4,
        conv_kernel_size=31, subsampling_channels=256, dropout_rate=0.1,
        predictor_embed_dim=256, predictor_hidden_size=640, joint_dim=640)
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 10000
    # "channel": one scale per output channel (gq_jax.default_channel_axes): per (head, head_dim) for
    # the attention's query/key/value/position kernels, per output for the rest (convs included).
    config.quant.rules = ((r"encoder/.*kernel", 4, "channel"), (r".*kernel", 8, "channel"))
    return config
