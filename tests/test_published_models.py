"""The models committed under results/models load, and their cards and README tell the truth.

Each folder must be a published model that `eval.py --model` can score: its weights fit the model
its config describes (`published.load` checks the shapes), the card's parameter count and file
size are those of the weights and the file, a model trained in stages names a committed parent
whose training the card copies, and results/models/README.md lists it.
"""

import pathlib

import jax
import pytest

import eval as eval_lib
from training import published

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ROOT / "results" / "models"
FOLDERS = sorted(folder for folder in MODELS.iterdir() if folder.is_dir())


def test_results_models_holds_only_published_models():
    assert FOLDERS, f"no published models under {MODELS}"
    assert [folder.name for folder in FOLDERS if not published.is_published(folder)] == []


@pytest.mark.parametrize("folder", FOLDERS, ids=[folder.name for folder in FOLDERS])
def test_a_committed_model_loads_and_its_card_states_its_size(folder):
    model = published.load(folder)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(model.params)) == model.card["parameters"]
    assert (folder / published.MODEL_FILE).stat().st_size == model.card["file_bytes"]
    # averaged_steps is empty for a single checkpoint, else ends at it.
    assert model.card["averaged_steps"][-1:] in ([], [model.card["checkpoint"]])
    assert model.card["checkpoint"] <= model.card["num_train_steps"]


@pytest.mark.parametrize("folder", [f for f in FOLDERS if "init_training" in published.load_card(f)],
                         ids=lambda folder: folder.name)
def test_a_model_trained_in_stages_names_a_committed_parent_and_copies_its_training(folder):
    card = published.load_card(folder)
    parent = ROOT / card["init_from"]
    assert published.is_published(parent), f"{folder.name}: init_from {card['init_from']} is not committed"
    assert card["init_training"] == eval_lib.init_lineage(str(parent))["init_training"]


def test_the_models_readme_lists_every_committed_model():
    readme = (MODELS / "README.md").read_text()
    assert [folder.name for folder in FOLDERS if f"`{folder.name}`" not in readme] == []
