"""RNN-T on LibriSpeech 960 h (TFDS), sized for one GPU/TPU host: sentencepiece tokens, SpecAugment.

Trains on the union of the three training splits; batches hold up to 2,400 s of padded audio
(about 200 utterances of LibriSpeech's 12 s average), in 8 shapes. For the extracted tarballs
instead of TFDS: `--config.data.kind=librispeech_folder --config.data.path=ROOT`.

The paper's mixed-precision set-up as rules: 1 bit for the middle encoder LSTM layers, 4 bits for
the other kernels. Fine-tune from a float run with
`--config.quant.method=gq --config.quant.init_from=FLOAT_WORKDIR`.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.kind = "librispeech_tfds"
    config.data.path = ""  # TFDS data_dir; "" uses TFDS's default
    config.data.train_split = "train_clean100+train_clean360+train_other500"
    config.data.max_batch_seconds = 2400.0
    config.data.num_buckets = 8
    config.data.num_workers = 8
    config.data.dev_split = "dev_clean"
    config.data.eval_splits = ("test_clean", "test_other")
    config.data.tokenizer = "sentencepiece"
    config.data.vocab_size = 1024
    config.data.max_dev_examples = 512
    config.model.encoder_layers = 8
    config.model.encoder_hidden_size = 1024
    config.model.frame_stack = 3
    config.model.time_reduction_layer = 1
    config.model.predictor_hidden_size = 640
    config.model.predictor_embed_dim = 256
    config.model.joint_dim = 640
    config.features.spec_augment = True
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 5000
    config.eval_batch_size = 64
    config.num_train_steps = 150000
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 2500
    config.quant.rules = ((r"encoder/lstm_[2-5]/.*kernel", 1, "channel"), (r".*kernel", 4, "channel"))
    config.quant.alpha.end_step = 20000
    config.quant.snap_every = 0
    return config
