"""Base config: every field the training and evaluation commands read, with defaults.

Other configs start from `get_config()` and override a few fields. `training.config.check_fields`
rejects any field not defined here (model fields are checked against the keyword arguments of the
model factory and of `models.transducer_parts.make_transducer`), so a typo in a config file or on
the command line is an error naming the field.

Sections:
  data      where the examples come from (`kind`: synth | manifest | librispeech_folder |
            librispeech_tfds; `train_split` may join splits with `+`), the tokenizer (`char`, or
            `sentencepiece` of `vocab_size`) and the input pipeline: batches of `batch_size`
            rows, or with `max_batch_seconds` > 0 as many rows as fit that much padded audio
            (a multiple of the device count); `num_buckets` shapes; `num_workers` grain worker
            processes decoding ahead, each `prefetch` batches; `strict` makes bad audio an error
            instead of a skipped, logged utterance; `speed_perturbation` speed factors drawn per
            training row (corpora.batching); `feature_normalization`: "utterance" (each
            utterance's own mean and variance, not causal) or "global" (corpus statistics of
            `normalization_utterances` training utterances drawn by `seed`, computed at the start
            and saved in the workdir: what streaming needs, `models.streaming`).
  features  log-mel front end, SpecAugment (training only).
  model     `name` (rnnt | conformer) plus the keyword arguments of `models.rnnt.make_rnnt` or
            `models.conformer.make_conformer`; the fields of the prediction network, joint and
            loss (`HEAD_FIELDS`) are shared by both, and `model_config` carries them over when a
            config changes the family, so every `--config.model.<head field>` works on every
            config.
  optim     optimizer of the network weights (adamw, warm-up then cosine decay, clipping).
  quant     `method` (a name of training/config.py METHODS: float | gq | uniform_ste | ptq_round |
            ptq_kmeans | qwix, each built from this section), `rules` as ordered
            (regex over the '/'-joined parameter path, bits, "tensor" | "channel") tuples (first
            match wins; "qwix", Qwix's weight-only QAT, takes 2..8 bits and quantizes only the
            weights Qwix intercepts, see training/qwix_qat.py), GQ's µ, mode, gradient estimator (and its
            backward α cap), window and centroid
            init, the softmax sharpness schedule `alpha`, `snap_every` (latent weights := hard
            values every F steps; 0: never), the centroids' own optimizer and learning rate, and
            `init_from` (the workdir of a float run whose latest parameters start this one, or a
            published model folder, `eval.py --publish`; the run also takes its tokenizer; ""
            starts from random weights).
"""

import ml_collections

# config.model fields every model family shares: the keyword arguments of
# `models.transducer_parts.make_transducer` other than `blank_id` (the tokenizer's).
HEAD_FIELDS = ("predictor_embed_dim", "predictor_hidden_size", "predictor_layers", "joint_dim",
               "loss_chunk_size", "ctc_weight", "prune_range", "simple_loss_scale")


def model_config(base: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
    """A new `config.model`: the `HEAD_FIELDS` of `base` (another config's model section), then
    `fields` (`name` and the family's encoder fields, and any head field to change)."""
    return ml_collections.ConfigDict({k: base[k] for k in HEAD_FIELDS} | fields)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.kind = "synth"
    config.data.path = "data/synth-en-small"
    config.data.train_split = "train"
    config.data.dev_split = "dev"
    config.data.eval_splits = ("test", "test_other")
    config.data.tokenizer = "char"
    config.data.vocab_size = 256  # sentencepiece only
    config.data.num_buckets = 4
    config.data.max_batch_seconds = 0.0  # 0: batch_size rows per batch
    config.data.num_workers = 2  # grain worker processes; 0 loads in the training process
    config.data.prefetch = 2  # batches each worker keeps ready
    config.data.strict = False  # bad audio raises instead of being skipped and logged
    config.data.speed_perturbation = ()  # e.g. (0.9, 1.0, 1.1): each training row played that much faster
    config.data.max_train_examples = 0  # 0: all
    config.data.max_dev_examples = 64  # dev WER during training on this many utterances; 0: all
    config.data.feature_normalization = "utterance"  # utterance | global (corpus statistics, causal)
    config.data.normalization_utterances = 500  # global: the training utterances its statistics sum over

    config.features = ml_collections.ConfigDict()
    config.features.num_mel_bins = 80
    config.features.spec_augment = False
    config.features.num_freq_masks = 2
    config.features.max_freq_mask_bins = 27
    config.features.num_time_masks = 2
    config.features.max_time_mask_frames = 40
    config.features.max_time_mask_fraction = 0.05

    config.model = ml_collections.ConfigDict()
    config.model.name = "rnnt"
    config.model.encoder_layers = 2
    config.model.encoder_hidden_size = 128
    config.model.frame_stack = 3
    config.model.time_reduction_layer = 0
    config.model.time_reduction_factor = 2
    config.model.predictor_embed_dim = 32
    config.model.predictor_hidden_size = 128
    config.model.joint_dim = 128
    config.model.predictor_layers = 1
    config.model.dropout_rate = 0.0
    # the transducer loss over chunks of this many frames, the joint recomputed in the backward
    # (`Transducer.loss_chunk_size`); and the weight of the encoder's auxiliary CTC loss (0: none)
    config.model.loss_chunk_size = 32
    config.model.ctc_weight = 0.0
    # 0: the full transducer loss; S >= 2: the pruned loss with S label positions per frame and its
    # trivial joiner's NLL weighted by simple_loss_scale (models/transducer_parts.py)
    config.model.prune_range = 0
    config.model.simple_loss_scale = 0.5

    config.optim = ml_collections.ConfigDict()
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 100
    config.optim.end_learning_rate_fraction = 0.05
    config.optim.weight_decay = 1e-6
    config.optim.grad_clip_norm = 5.0

    config.quant = ml_collections.ConfigDict()
    config.quant.method = "float"
    config.quant.rules = ((r".*kernel", 4, "channel"),)
    config.quant.mu = 8.0
    config.quant.mode = "ste"
    config.quant.distance = "sq"  # sq | abs: d in a_k = softmax(-alpha d((v - c_k) / delta))
    # GQ's backward (gq_jax.GQConfig.estimator): straight_through (chosen by the large-scale
    # ablation, README "GQ's gradient estimator") | soft_jacobian | capped_alpha
    config.quant.estimator = "straight_through"
    config.quant.backward_alpha = 5.0  # alpha_b: the backward sharpness cap of capped_alpha (alpha.start)
    config.quant.window = 4
    config.quant.init = "auto"
    config.quant.alpha = ml_collections.ConfigDict()
    config.quant.alpha.schedule = "exponential"  # constant | linear | exponential
    config.quant.alpha.start = 5.0
    config.quant.alpha.end = 500.0
    config.quant.alpha.begin_step = 0
    config.quant.alpha.end_step = 1000
    config.quant.snap_every = 0
    config.quant.centroid_optimizer = "adam"  # any optax optimizer taking a learning rate
    # 1e-4, not 1e-3: on the large RNN-T fine-tune (1,500 steps), Adam at 1e-3 moves each centroid
    # by up to ~1e-3 a step and drifts them into near-duplicate pairs; 1e-4 scores 0.68 points
    # better at 4 bits and 2.05 at 2 bits (paired 95 % intervals [-1.20, -0.15], [-2.76, -1.33];
    # results/README.md, ablation "centroids").
    config.quant.centroid_learning_rate = 1e-4
    config.quant.init_from = ""

    config.batch_size = 16  # global, over all devices and hosts
    config.num_train_steps = 2000
    config.log_every_steps = 50
    config.tensorboard = True  # also write TensorBoard events when TensorFlow is installed
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 250
    config.keep_checkpoints = 3
    config.eval_batch_size = 16
    config.beam = 1  # 1: greedy
    return config
