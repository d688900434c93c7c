"""The library's and the notebook's defaults are the study's: the simplest call reproduces it."""

import re
from pathlib import Path

import pytest
import torch
from test_config import notebook_parameters

from lora_lib import apply_method, count_parameters, from_adapter, load_model, save_adapter
from lora_lib.study.config import RunConfig
from lora_lib.study.grid import expand
from lora_lib.study.record import load_record, load_records

REPO = Path(__file__).resolve().parent.parent
EXECUTED = REPO / "executed"
NOT_A_KNOB = {"seed", "run_id", "output_dir", "data_dir", "device"}


def readme_main_job() -> dict:
    """The parameters that the README's main job sets with -p, as papermill passes them."""
    readme = (REPO / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("pip install") and "papermill" in line)
    return {name: int(value) if value.isdigit() else value for name, value in re.findall(r"-p (\w+) (\S+)", command)}


def from_notebook(**set_by_hand) -> RunConfig:
    """The run the training notebook makes when only ``set_by_hand`` is given (papermill's -p)."""
    parameters = {k: v for k, v in notebook_parameters(REPO / "book" / "train.ipynb").items() if k != "overwrite"}
    return RunConfig.from_parameters(**{**parameters, **set_by_hand})


def test_the_readmes_main_job_is_the_studys_own_run_of_lora_r8_seed_0():
    config = from_notebook(**readme_main_job())
    record = load_record(EXECUTED / "lora_r8_s0.json").config
    assert config.group_key() == record.group_key() and config.seed == record.seed
    assert config.run_id == record.run_id


@pytest.mark.parametrize("grid", ["experiments.yml"])
def test_every_configuration_of_the_grid_is_its_methods_defaults_plus_its_hyperparameters(grid):
    """A run that names only its method and hyperparameters (no rate, head, schedule or
    precision) is the study's run of that configuration."""
    runs = expand(REPO / "studies" / "v2" / grid).runs
    for run in runs:
        studied = RunConfig.from_parameters(**run.parameters)
        plain = RunConfig(method=studied.method, hparams=studied.hparams, seed=studied.seed)
        assert plain.group_key() == studied.group_key(), run.run_id
    records = {r.run_id: r for r in load_records(EXECUTED)}
    assert {r.run_id for r in runs} <= set(records)


def test_the_default_model_trains_no_frozen_untrained_projection():
    model, _ = load_model("tiny-random")
    assert model.head_kind == "mean" and model.bert.pooler is None
    apply_method(model, "lora")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("classifier.") or ".lora_" in n for n in trained)
    # Every parameter on the path from the encoder to the logits that is frozen is pretrained:
    # the only Linear layers outside the encoder are the classifier, which trains.
    outside = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("bert.")]
    assert outside == ["classifier"]


def test_an_adapter_file_names_its_base_model_and_head(tmp_path, tiny):
    model, _ = tiny
    apply_method(model, "lora", rank=4)
    path = save_adapter(model, tmp_path / "a.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    assert (metadata["model"], metadata["head"]) == ("tiny-random", "mean")
    with pytest.raises(ValueError) as err:  # its base weights are random: no file can restore them
        from_adapter(path)
    assert "tiny-random" in str(err.value)


@pytest.mark.slow
def test_a_study_adapter_loads_in_one_call_and_predicts_what_its_record_says(sst2_dir):
    from lora_lib.study.data import load_sst2

    record = load_record(EXECUTED / "lora_r8_s0.json")
    model, tokenizer = from_adapter(EXECUTED / record.adapter_file)
    assert model.head_kind == record.config.head and model.applied_method["hparams"]["rank"] == 8
    assert count_parameters(model)["trainable"] == record.params.trainable
    sentences = load_sst2(sst2_dir)["validation"]["sentence"][:64]
    with torch.no_grad():
        logits = model.eval()(**tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")).logits
    assert logits.argmax(-1).tolist() == record.predictions.label[:64]
    torch.testing.assert_close(
        logits.softmax(-1)[:, 1], torch.tensor(record.predictions.prob_positive[:64]), rtol=0, atol=1e-4
    )
