"""RNN-T on the `full` synth-en corpus (a longer CPU or a single-GPU run)."""

from configs import default


def get_config():
    config = default.get_config()
    config.data.path = "data/synth-en-full"
    config.model.encoder_layers = 4
    config.model.encoder_hidden_size = 320
    config.model.frame_stack = 3
    config.model.time_reduction_layer = 1
    config.model.predictor_hidden_size = 320
    config.model.predictor_embed_dim = 64
    config.model.joint_dim = 320
    config.features.spec_augment = True
    config.batch_size = 32
    config.num_train_steps = 20000
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 1000
    config.quant.alpha.end_step = 5000
    return config
