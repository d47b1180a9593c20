"""Orbax checkpoints in `workdir/checkpoints`: the TrainState plus the data-iterator position.

Each checkpoint holds two items: "state" (the whole `TrainState` pytree: step, params, quantizer
state, optimizer state, RNG) and "data" (JSON: `corpora.batching.BatchPlan.state(next batch)`). The config that made them
is `workdir/config.json`; `check_compatible` compares a new config with it before anything in the
workdir is written, so a run with another model or quantizer cannot overwrite or misread it.
Orbax writes each step to a temporary folder and renames it when complete, so a process killed
mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from corpora.files import write_text_atomic

CONFIG_FILE = "config.json"
# Fields that decide the shapes and meaning of what a checkpoint holds, and the value of those a
# config saved before they existed has.
STRUCTURAL_FIELDS = ("model", "quant.method", "quant.rules", "data.tokenizer", "data.vocab_size",
                     "features.num_mel_bins", "data.feature_normalization")
FIELD_DEFAULTS = {"data.feature_normalization": "utterance"}


def manager(workdir: str | pathlib.Path, keep: int = 3, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        pathlib.Path(workdir).absolute() / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                            cleanup_tmp_directories=create),
        item_names=("state", "data"))


def _field(config: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    config = FIELD_DEFAULTS.get(dotted) if config is None else config
    return json.loads(json.dumps(config))  # tuples -> lists, as read back from JSON


def check_compatible(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    """ValueError naming the fields where `config` differs from the one saved in `workdir`."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    new = config.to_dict()
    differ = [f"{name}: saved {_field(saved, name)!r}, now {_field(new, name)!r}"
              for name in STRUCTURAL_FIELDS if _field(saved, name) != _field(new, name)]
    if differ:
        raise ValueError(f"{workdir} holds checkpoints of an incompatible config ({'; '.join(differ)}); "
                         "use another --workdir or the same config. Nothing was written.")


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> None:
    write_text_atomic(pathlib.Path(workdir) / CONFIG_FILE, config.to_json(indent=2))


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{workdir} has no {CONFIG_FILE}: not a training workdir")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def save(mngr: ocp.CheckpointManager, state: Any, data_state: dict[str, Any]) -> None:
    """Saves host copies of `state` (unreplicated) and the iterator position at `state.step`."""
    host = jax.device_get(state)
    mngr.save(int(host.step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(host), data=ocp.args.JsonSave(data_state)))


def restore(mngr: ocp.CheckpointManager, target: Any, step: int | None = None
            ) -> tuple[Any, dict[str, Any]]:
    """(state shaped like `target`, iterator position) of checkpoint `step` (default: latest)."""
    step = mngr.latest_step() if step is None else step
    if step is None or step not in mngr.all_steps():
        raise FileNotFoundError(f"no checkpoint {'' if step is None else step} in {mngr.directory}; "
                                f"steps present: {sorted(mngr.all_steps())}")
    abstract = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), target)
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {step} in {mngr.directory} does not fit this config's "
                         f"model/quantizer: {e}") from e
    return type(target)(*restored.state) if isinstance(target, tuple) else restored.state, restored.data


def restore_params(workdir: str | pathlib.Path) -> Any:
    """The params of the latest checkpoint in `workdir` (for `init_from`), without a target."""
    directory = pathlib.Path(workdir).absolute() / "checkpoints"
    if not directory.exists():
        raise FileNotFoundError(f"init_from={str(workdir)!r}: no checkpoints folder {directory}")
    mngr = manager(workdir, create=False)
    step = mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"init_from={str(workdir)!r}: no checkpoint in {directory}")
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    state = restored.state
    return state["params"] if isinstance(state, dict) else state[1]
