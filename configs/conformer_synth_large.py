"""Conformer transducer on synth-en `large` (44 h), at on-device size: 8 blocks of width 128 (4 heads
of 32), a 64-channel subsampling stem (40 ms frames), an auxiliary CTC loss (weight 0.3; 25 frames
per second leave room for the characters) and the data and tokenizer settings of
configs/rnnt_synth_large.py (characters, no augmentation: see there why); 3.83 M parameters.

The budget is what fits the recognizers issue's 4 h on the 2-core machine: 2.27 s per train step
alone on the machine of 2026-12-01 (`python benchmarks/train_step.py --corpus data/synth-en-large`,
results/benchmarks/train_step.txt), so 5,500 steps (1.9 epochs) take 3.5 h plus dev evaluations;
on the faster machine of 2026-12-02 a step takes 1.31 s. The published
results/models/conformer_synth_large ran 3,300 of them (`--config.num_train_steps=3300`, so its
schedule decays over 3,300), to fit one 3 h session: results/recognizers/README.md. A 128-channel
stem (4.09 M parameters) costs 70.2 GFLOP per train step against 49.2 and 4.09 s against 2.39 s
(`--configs conformer_synth_large,conformer_synth_large+ --set model.subsampling_channels=128`, in
one run); the blocks stay 128 wide.
"""

from configs import default, rnnt_synth_large


def get_config():
    config = rnnt_synth_large.get_config()
    config.model = default.model_config(config.model,
        name="conformer", encoder_layers=8, model_dim=128, num_heads=4, ff_multiplier=4,
        conv_kernel_size=15, subsampling_channels=64, dropout_rate=0.1,
        predictor_embed_dim=64, predictor_hidden_size=256, joint_dim=256, ctc_weight=0.3)
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 1000
    config.num_train_steps = 5500
    config.quant.rules = ((r"encoder/.*kernel", 4, "channel"), (r".*kernel", 8, "channel"))
    return config
