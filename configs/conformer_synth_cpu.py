"""A compact Conformer transducer on the `full` synth-en corpus for the results' CPU scale
(`--scale cpu` of experiments/run.py): 4 blocks of width 96, a 64-channel subsampling stem. About
2.3 s per training step at batch 16 on 2 cores, so its float budget is 1,000 steps."""

from configs import conformer_synth


def get_config():
    config = conformer_synth.get_config()
    config.model.update(encoder_layers=4, model_dim=96, subsampling_channels=64, dropout_rate=0.0,
                        predictor_hidden_size=192, joint_dim=192)
    config.features.spec_augment = False
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 200
    config.batch_size = 16
    config.num_train_steps = 1000
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 250
    return config
