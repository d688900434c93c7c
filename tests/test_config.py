"""RunConfig: the one definition of a run's knobs, which the notebook's parameters follow."""

import ast
from pathlib import Path

import nbformat
import pytest

from lora_lib.registry import METHODS, hyperparameters
from lora_lib.study.config import RunConfig

REPO = Path(__file__).resolve().parent.parent


def notebook_parameters(path: Path) -> dict:
    """The names and default values that the cell tagged ``parameters`` assigns."""
    notebook = nbformat.read(path, as_version=4)
    [cell] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assigned = {}
    for statement in ast.parse(cell.source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        assigned[statement.targets[0].id] = ast.literal_eval(statement.value)
    return assigned


def test_the_notebooks_parameters_are_runconfigs():
    """Names and defaults: a knob added to RunConfig or to a method, and not to the notebook
    (or the other way round), fails here."""
    notebook = notebook_parameters(REPO / "book" / "train.ipynb")
    expected = {**RunConfig.parameters(), "overwrite": False}
    assert sorted(notebook) == sorted(expected)
    for name, default in expected.items():
        assert notebook[name] == default and type(notebook[name]) is type(default), name


def test_the_flat_parameters_are_the_fields_and_every_methods_hyperparameters():
    flat = RunConfig.parameters()
    assert "hparams" not in flat
    assert set(RunConfig.model_fields) - {"hparams"} <= set(flat)
    for spec in METHODS.values():
        assert set(spec.defaults) <= set(flat), spec.name
    assert all(flat[name] is None for name in hyperparameters())  # None: the method's own default
    assert RunConfig.from_parameters(**flat) == RunConfig()


def test_from_parameters_gathers_the_hyperparameters():
    config = RunConfig.from_parameters(
        **{**RunConfig.parameters(), "method": "lora", "rank": 4, "seed": 2, "targets": "query, key", "lr": 1e-3}
    )
    assert config.hparams == {"rank": 4, "targets": ["query", "key"]}
    assert (config.seed, config.run_id) == (2, "lora_r4_s2")
    houlsby = RunConfig.from_parameters(method="houlsby", reduction_factor=8, rank=None, lr=1e-3)  # None: not set
    assert houlsby.hparams == {"reduction_factor": 8}


@pytest.mark.parametrize(
    "method, name", [("bitfit", "rank"), ("houlsby", "rank"), ("lora", "bottleneck"), ("ia3", "targets")]
)
def test_from_parameters_refuses_a_hyperparameter_the_method_does_not_take(method, name):
    with pytest.raises(TypeError) as err:
        RunConfig.from_parameters(method=method, **{name: 8})
    assert name in str(err.value)


def test_from_parameters_refuses_unknown_names():
    with pytest.raises(TypeError) as err:
        RunConfig.from_parameters(method="lora", learning_rate=1e-3)
    assert "learning_rate" in str(err.value)
    with pytest.raises(TypeError) as err:
        RunConfig.from_parameters(hparams={"rank": 8})  # the flat form has no hparams
    assert "hparams" in str(err.value)


@pytest.mark.parametrize(
    "config, name",
    [
        ({"learning_rate": 1e-3}, "learning_rate"),
        ({"method": "prefix"}, "prefix"),
        ({"precision": "fp16"}, "precision"),
        ({"device": "tpu"}, "device"),
        ({"eval_split": "test"}, "eval_split"),
        ({"lr": 0}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ],
)
def test_bad_config(config, name):
    with pytest.raises(ValueError) as err:
        RunConfig(**config)
    assert name in str(err.value)


def test_a_hyperparameter_the_method_does_not_take_in_hparams():
    with pytest.raises(TypeError) as err:
        RunConfig(method="bitfit", hparams={"rank": 8})
    assert "rank" in str(err.value)


def test_run_ids():
    assert RunConfig().run_id == "lora_r8_s0"
    assert RunConfig(hparams={"rank": 64}, seed=2).run_id == "lora_r64_s2"
    assert RunConfig(method="houlsby", seed=1).run_id == "houlsby_s1"
    assert RunConfig(run_id="mine").run_id == "mine"


def test_the_group_key_is_the_configuration_without_its_seed():
    base = RunConfig(hparams={"rank": 8}, lr=1e-3)
    assert (
        RunConfig(hparams={"rank": 8}, lr=1e-3, seed=1, run_id="other", output_dir="elsewhere").group_key()
        == base.group_key()
    )
    # the method's defaults written out or left out: the same configuration
    assert RunConfig(hparams={"rank": 8, "alpha": 16}, lr=1e-3).group_key() == base.group_key()
    assert RunConfig(hparams={"rank": 4}, lr=1e-3).group_key() != base.group_key()
    assert RunConfig(hparams={"rank": 8}, lr=2e-3).group_key() != base.group_key()
    assert RunConfig(hparams={"rank": 8}, lr=1e-3, eval_split="holdout").group_key() != base.group_key()


def test_a_run_that_names_no_rate_takes_the_one_the_study_chose_for_its_configuration():
    from lora_lib.study.rates import LORA_RATES, METHOD_RATES

    assert RunConfig().lr == LORA_RATES["query", "value"][8]
    assert RunConfig(method="houlsby").lr == METHOD_RATES["houlsby"]
    assert RunConfig(method="lora", hparams={"rank": 32}).lr == LORA_RATES["query", "value"][64]  # nearest in log2
    assert RunConfig(method="lora", hparams={"rank": 2, "targets": "query,value"}).lr == LORA_RATES["query", "value"][1]
    assert RunConfig(method="houlsby", lr=5e-4).lr == 5e-4
    assert (RunConfig().epochs, RunConfig().head) == (1.5, "mean")


@pytest.mark.parametrize(
    "hparams", [{"alpha": 8}, {"use_rslora": True}, {"targets": ["query", "key"]}], ids=["alpha", "rslora", "targets"]
)
def test_a_configuration_the_study_never_searched_must_name_its_rate(hparams):
    with pytest.raises(ValueError) as err:
        RunConfig(method="lora", hparams=hparams)
    assert "lr" in str(err.value) and "lora(" in str(err.value)
