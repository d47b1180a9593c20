"""Configs: every config file loads, passes the field check, and builds its model and quantizer."""

import importlib
import inspect
import pathlib

import pytest

import gq_jax
from configs import default
from models.transducer_parts import make_transducer
from training import checkpoints
from training import config as config_lib

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.stem != "__init__")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_passes_the_field_check_and_builds_its_parts(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config_lib.check_fields(config)
    model = config_lib.model_from_config(config.model, vocab_size=29)
    config_lib.alpha_schedule(config.quant.alpha)
    assert isinstance(config_lib.method_for(config.quant, model, config.features.num_mel_bins).quantizer,
                      gq_jax.Quantizer)
    for method in ("gq", "uniform_ste", "ptq_round", "ptq_kmeans"):
        config.quant.method = method
        assert len(config_lib.gq_config(config.quant).rules) == len(config.quant.rules)


def test_the_head_fields_are_the_shared_keywords_of_the_model_factories():
    """`HEAD_FIELDS` is every keyword of `make_transducer` but the tokenizer's blank id."""
    shared = set(config_lib.model_defaults("rnnt")) & set(config_lib.model_defaults("conformer"))
    head = set(inspect.signature(make_transducer).parameters) - {"encoder", "vocab_size", "blank_id"}
    assert set(default.HEAD_FIELDS) == head and head <= shared


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_sets_every_head_field_so_each_can_be_overridden(name):
    """`--config.model.prune_range=4` (or any head field) works on every config: the field exists
    (ml_collections rejects an override of a missing one)."""
    config = importlib.import_module(f"configs.{name}").get_config()
    missing = [k for k in default.HEAD_FIELDS if k not in config.model]
    assert not missing, f"configs/{name}.py: config.model lacks {missing}"
    config.model.prune_range = 4
    assert config_lib.model_from_config(config.model, vocab_size=29).prune_range == 4


def test_model_config_carries_the_head_over_and_takes_the_given_fields():
    base = default.get_config().model
    base.ctc_weight = 0.3
    model = default.model_config(base, name="conformer", model_dim=96, joint_dim=64)
    assert model.ctc_weight == 0.3 and model.joint_dim == 64 and model.model_dim == 96
    assert "encoder_hidden_size" not in model and model.name == "conformer"


@pytest.mark.parametrize("section, field", [("", "num_train_stepz"), ("quant", "snap_evry"),
                                            ("model", "encoder_layerz"), ("model", "joint_dimz")])
def test_an_unknown_field_is_an_error_naming_it(section, field):
    config = importlib.import_module("configs.default").get_config()
    (config[section] if section else config)[field] = 1
    with pytest.raises(ValueError, match=(f"{section}." if section else "") + field):
        config_lib.check_fields(config)


def test_an_unknown_method_is_an_error_naming_the_known_ones():
    config = importlib.import_module("configs.default").get_config()
    config.quant.method = "gq4"
    with pytest.raises(ValueError, match="ptq_kmeans"):
        config_lib.check_fields(config)
    with pytest.raises(ValueError, match="'gq4'.*ptq_kmeans"):
        config_lib.method_for(config.quant, None, 16)


def test_a_registered_method_is_built_from_the_config_section_and_a_name_registers_once(monkeypatch):
    monkeypatch.setattr(config_lib, "METHODS", dict(config_lib.METHODS))
    config = importlib.import_module("configs.default").get_config()
    config.quant.method = "gq_frozen_alpha"
    config_lib.register("gq_frozen_alpha", lambda quant, model, num_mel_bins: gq_jax.gq(
        config_lib.gq_config(quant), alpha=quant.alpha.end), post_training=False)
    config_lib.check_fields(config)
    method = config_lib.method_for(config.quant, "the model", 16)
    assert method.training_model == "the model" and isinstance(method.quantizer, gq_jax.Quantizer)
    assert not config_lib.is_post_training("gq_frozen_alpha") and config_lib.is_post_training("ptq_round")
    with pytest.raises(ValueError, match="already registered"):
        config_lib.register("gq", lambda quant, model, num_mel_bins: gq_jax.identity())
    config_lib.register("broken", lambda quant, model, num_mel_bins: "not a quantizer")
    config.quant.method = "broken"
    with pytest.raises(ValueError, match="'broken' returned str"):
        config_lib.method_for(config.quant, None, 16)


def test_the_code_that_trains_evaluates_and_runs_experiments_never_branches_on_a_method_name():
    """Method names live in training/config.py METHODS (and as config values in configs/ and the
    experiment registry): train.py, eval.py and the experiment runner never compare one.
    (experiments/report.py only reads published rows: it states the paper's claims about GQ.)"""
    import re

    root = pathlib.Path(__file__).parents[1]
    names = "|".join(config_lib.METHODS)
    compared = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=|\bin\b)""")
    files = [root / "train.py", root / "eval.py", root / "training" / "runs.py",
             *(root / "experiments" / f"{name}.py" for name in ("registry", "run", "step_time"))]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not compared.search(line), f"{path.name}:{number}: {line.strip()}"


def test_float_quantizes_nothing_and_the_rules_keep_their_order():
    import jax

    from training import state as state_lib

    config = importlib.import_module("configs.rnnt_librispeech").get_config()
    model = config_lib.model_from_config(config.model, vocab_size=29)
    params = jax.eval_shape(lambda: state_lib.random_params(model, config))
    quantizer = config_lib.method_for(config.quant, model, config.features.num_mel_bins).quantizer
    assert quantizer.harden(params, quantizer.init(params)) is params
    config.quant.method = "gq"
    rules = config_lib.gq_config(config.quant).rules
    assert [(r.pattern, r.bits) for r in rules] == [(p, b) for p, b, _ in config.quant.rules]
    assert rules[0].bits == 1


def test_the_distance_reaches_the_quantizer_and_a_config_saved_without_it_gets_the_default():
    config = importlib.import_module("configs.default").get_config()
    config.quant.method = "gq"
    config.quant.distance = "abs"
    assert config_lib.gq_config(config.quant).distance == "abs"
    del config.quant["distance"]  # a workdir's config.json from before the field existed
    assert config_lib.gq_config(config.quant).distance == "sq"


@pytest.mark.parametrize("name", ["conformer_synth", "conformer_synth_cpu", "conformer_librispeech"])
def test_conformer_recipes_scale_every_output_channel_never_sharing_a_scale_across_heads(name):
    import jax

    import gq_jax
    from training import state as state_lib

    config = importlib.import_module(f"configs.{name}").get_config()
    config.quant.method = "gq"
    model = config_lib.model_from_config(config.model, vocab_size=29)
    shapes = jax.eval_shape(lambda: state_lib.random_params(model, config))
    plan = {leaf.path: leaf for leaf in gq_jax.summary(shapes, config_lib.gq_config(config.quant)).leaves}
    dim, heads = config.model.model_dim, config.model.num_heads
    expected = {"attention/query/kernel": heads * (dim // heads), "attention/key/kernel": dim,
                "attention/value/kernel": dim, "attention/position/kernel": dim,
                "attention/output/kernel": dim, "convolution/depthwise/kernel": dim,
                "convolution/pointwise_in/kernel": 2 * dim, "ff_start/hidden/kernel": 4 * dim}
    block = "encoder/block_0/"
    for kernel, scales in expected.items():
        assert plan[block + kernel].num_scales == scales, kernel
    assert plan[block + "attention/query/kernel"].channel_axes == (1, 2)
    channels = config.model.subsampling_channels
    assert plan["encoder/subsampling/conv_1/kernel"].num_scales == channels
    assert plan["predictor/lstm_0/recurrent_kernel"].num_scales == 4 * config.model.predictor_hidden_size


def test_a_rule_may_give_channel_axes_as_a_fourth_element_and_three_element_rules_stay_valid():
    config = importlib.import_module("configs.default").get_config()
    config.quant.method = "gq"
    config.quant.rules = ((r"a", 4, "channel", (0,)), [r"b", 2, "channel", [0, 1]], (r"c", 8, "channel", None),
                          (r"d", 8, "tensor"))
    rules = config_lib.gq_config(config.quant).rules
    assert [rule.channel_axes for rule in rules] == [(0,), (0, 1), None, None]
    config.quant.rules = ((r"a", 4),)
    with pytest.raises(ValueError, match=r"rules entry \('a', 4\)"):
        config_lib.gq_config(config.quant)


def test_the_demo_config_takes_the_quantizer_settings_of_the_library_not_of_the_published_model():
    from configs import default, demo_gq

    published = checkpoints.load_config(demo_gq.PUBLISHED).quant
    library = default.get_config().quant
    assert published.centroid_learning_rate != library.centroid_learning_rate  # else this proves nothing
    quant = demo_gq.get_config().quant
    assert quant.centroid_learning_rate == library.centroid_learning_rate
    assert (quant.method, quant.init_from, quant.estimator) == ("gq", demo_gq.PUBLISHED, "straight_through")
