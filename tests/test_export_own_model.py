"""`qtool export` of a hospital's own model: class names, normalisation and positive class in
the metadata later stages read; checkpoints saved in the usual foreign layouts; one clear line
for each checkpoint or shape mistake."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from qtool.cli import main
from qtool.modelfile.load import load_model, sha256_file
from qtool.modelfile.metadata import qtool_metadata

torch = pytest.importorskip("torch")

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def build():
    torch.manual_seed(0)
    return Net()


class Table(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(30, 2)

    def forward(self, x):
        return self.fc(x)


def table():
    torch.manual_seed(0)
    return Table()


class Branchy(Table):
    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def branchy():
    return Branchy()
"""


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    path = folder / "net.py"
    path.write_text(textwrap.dedent(NET))
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return path, namespace["build"]().state_dict()


def test_described_model_is_read_by_eval(net, tmp_path):
    path, _ = net
    out = tmp_path / "t.onnx"
    result = run(
        "export", f"{path}:table", "--input-shape", "1,30", "--out", out,
        "--class-names", "malignant,benign", "--normalize", "10/5", "--positive-class", "benign",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "malignant, benign" in result.output and "none (factory initialisation)" in result.output
    meta = qtool_metadata(load_model(out))
    assert meta["class_names"] == ["malignant", "benign"]
    assert meta["normalization"] == {"mean": [10.0], "std": [5.0]}
    assert meta["positive_class"] == "benign"
    evaluated = run("eval", out, "--data", "breast-cancer")
    assert evaluated.exit_code == 0, evaluated.output
    assert "sensitivity (benign)" in evaluated.output  # the model's choice, not the data set's
    by_name = run("eval", out, "--data", "breast-cancer", "--positive-class", "malignant")
    assert by_name.exit_code == 0 and "sensitivity (malignant)" in by_name.output
    assert_bad_input(
        run("eval", out, "--data", "breast-cancer", "--positive-class", "nope"),
        "--positive-class",
        "not one of the classes (malignant, benign)",
    )


@pytest.mark.parametrize(
    ("layout", "said"),
    [
        ("plain", "the file's state_dict"),
        ("state_dict", "its 'state_dict' entry"),
        ("model", "its 'model' entry"),
        ("parallel", "'module.' prefix removed (DataParallel)"),
    ],
)
def test_checkpoint_layouts_load_and_say_which(net, tmp_path, layout, said):
    path, state = net
    wrapped = {k: v + 0.25 for k, v in state.items()}  # not the factory's own weights
    parallel = {f"module.{k}": v for k, v in wrapped.items()}
    payload = {
        "plain": wrapped,
        "state_dict": {"epoch": 7, "state_dict": wrapped, "best_acc": 0.9},
        "model": {"model": parallel, "optimizer": {"lr": 0.1}},
        "parallel": parallel,
    }[layout]
    weights = tmp_path / "w.pt"
    torch.save(payload, weights)
    out = tmp_path / "n.onnx"
    args = ["export", f"{path}:build", "--input-shape", "1,1,8,8", "--weights", weights]
    result = run(*args, "--out", out, "--static-batch")
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.output.split()), result.output
    from qtool.models.checkpoint import state_dict_sha256

    assert qtool_metadata(load_model(out))["weights_sha256"] == state_dict_sha256(wrapped)


def test_checkpoint_and_shape_mistakes_are_one_line_each(net, tmp_path):
    path, state = net
    base = ["export", f"{path}:build", "--input-shape", "1,1,8,8"]
    renamed = {k.replace("head.", "classifier."): v for k, v in state.items()}
    cases = {
        "renamed": (
            renamed,
            ["2 missing keys (head.weight, head.bias)", "2 unexpected keys (classifier.weight"],
        ),
        "reshaped": (
            {**state, "head.weight": torch.zeros(3, 4)},
            ["keys of another shape", "head.weight [3, 4] vs [2, 4]"],
        ),
        "nothing": ({"epoch": 3, "notes": "x"}, ["holds no state_dict", "epoch, notes"]),
    }
    for name, (payload, fragments) in cases.items():
        weights = tmp_path / f"{name}.pt"
        torch.save(payload, weights)
        before = sha256_file(weights)
        out = tmp_path / f"{name}.onnx"
        assert_bad_input(run(*base, "--weights", weights, "--out", out), *fragments)
        assert not out.exists() and sha256_file(weights) == before
    out = tmp_path / "x.onnx"
    assert_bad_input(
        run("export", f"{path}:build", "--input-shape", "1,3,8,8", "--out", out),
        "--input-shape",
        "to have 1 channels, but got 3 channels",
        "the input shape is wrong",
    )
    for extra, fragments in [
        (["--normalize", "0.5,0.4/0.2,0.1"], ["--normalize", "2 mean values", "1 channels"]),
        (["--normalize", "0.5"], ["--normalize", "is not MEAN/STD"]),
        (["--normalize", "0.5/0"], ["--normalize", "std must be positive"]),
        (["--class-names", "a,b", "--positive-class", "c"], ["--positive-class", "not one of"]),
        (["--positive-class", "a"], ["--positive-class", "needs class names"]),
        (["--class-names", "a,b,c"], ["--class-names", "3 class names", "scores 2 classes"]),
    ]:
        assert_bad_input(run(*base, "--out", out, *extra), *fragments)
        assert not out.exists()


def test_exporter_failure_is_one_line_with_its_cause(net, tmp_path):
    path, _ = net
    out = tmp_path / "b.onnx"
    result = run("export", f"{path}:branchy", "--input-shape", "1,30", "--out", out)
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "data-dependent" in result.output and "torchscript exporter" in result.output
    assert not out.exists()


def test_zoo_models_keep_their_trained_normalisation(zoo_checkpoints, tmp_path):
    out = tmp_path / "m.onnx"
    args = ["export", "mlp", "--weights", zoo_checkpoints["mlp"], "--out", out]
    assert_bad_input(run(*args, "--normalize", "0/1"), "--normalize", "trained with")
    assert_bad_input(run(*args, "--class-names", "a,b,c"), "--class-names", "trained on 2")
