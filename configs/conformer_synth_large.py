"""Conformer transducer on synth-en `large` (44 h), at on-device size: 8 blocks of width 128 (4 heads
of 32), a 64-channel subsampling stem (40 ms frames), an auxiliary CTC loss (weight 0.3; 25 frames
per second leave room for the characters) and the data and tokenizer settings of
configs/rnnt_synth_large.py (characters, no augmentation: see there why); 3.83 M parameters.

The budget is what fits the recognizers issue's 4 h on the 2-core machine. A 128-channel stem
(4.09 M parameters) costs 67.5 GFLOP per encoder forward+backward of 20 rows of 3.1 s against
46.5 with 64 channels, and twice the time (XLA's cost analysis and wall time of the jitted
encoder VJP, measured while the machine trained another model); the blocks stay 128 wide.
"""

import ml_collections

from configs import rnnt_synth_large


def get_config():
    config = rnnt_synth_large.get_config()
    config.model = ml_collections.ConfigDict(dict(
        name="conformer", encoder_layers=8, model_dim=128, num_heads=4, ff_multiplier=4,
        conv_kernel_size=15, subsampling_channels=64, dropout_rate=0.1,
        predictor_embed_dim=64, predictor_hidden_size=256, joint_dim=256, ctc_weight=0.3,
        loss_chunk_size=1024))
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 1000
    config.num_train_steps = 5500
    config.quant.rules = ((r"encoder/.*kernel", 4, "channel"), (r".*kernel", 8, "channel"))
    return config
