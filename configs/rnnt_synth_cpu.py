"""A compact RNN-T on the `full` synth-en corpus, sized so that the results' float run and every
fine-tune fit a 2-core CPU session (`--scale cpu` of experiments/run.py): 3 x 192 LSTM encoder,
about 0.5 s per training step at batch 16 on 2 cores."""

from configs import rnnt_synth


def get_config():
    config = rnnt_synth.get_config()
    config.model.encoder_layers = 3
    config.model.encoder_hidden_size = 192
    config.model.predictor_hidden_size = 192
    config.model.joint_dim = 192
    config.features.spec_augment = False  # a short budget: augmentation slows convergence more than it helps
    config.batch_size = 16
    config.num_train_steps = 2000
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 250
    return config
