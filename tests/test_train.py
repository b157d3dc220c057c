"""Training recipe, checkpoints and `qtool train`: determinism, normalisation, refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from qtool.cli import main
from qtool.data.datasets import load_dataset
from qtool.errors import QtoolError
from qtool.modelfile.load import sha256_file

torch = pytest.importorskip("torch")

from qtool.from_torch.train import train_zoo_model  # noqa: E402
from qtool.models import get_spec, list_models  # noqa: E402
from qtool.models.checkpoint import FORMAT, load_checkpoint, load_state_dict  # noqa: E402
from qtool.models.trainer import compute_normalization, train  # noqa: E402
from qtool.models.zoo import LocalSelfAttention  # noqa: E402


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


class Opaque:
    """A custom class: pickling it makes a checkpoint that is not weights-only."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_registry_lists_models_without_importing_torch():
    code = (
        "import sys, qtool.models, qtool.cli\n"
        "from qtool.models import list_models\n"
        "assert [m.name for m in list_models()] == ['cnn', 'sasa', 'resnet18', 'mlp']\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {m.default_data for m in list_models()} == {"digits", "breast-cancer"}


def test_unknown_zoo_model_is_bad_input():
    with pytest.raises(QtoolError, match="unknown zoo model 'resnet'"):
        get_spec("resnet")


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    data = {s: load_dataset("digits", s) for s in ("train", "val")}
    spec = get_spec("cnn")

    def weights(seed: int) -> dict:
        result = train(
            spec,
            data["train"].x,
            data["train"].y,
            data["val"].x,
            data["val"].y,
            class_names=data["train"].class_names,
            dataset="digits",
            kind="image",
            seed=seed,
            epochs=1,
        )
        return result.module.state_dict()

    a, b, c = weights(3), weights(3), weights(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_normalization_comes_from_the_train_split():
    train_x = load_dataset("digits", "train").x
    norm = compute_normalization(train_x, "per-channel")
    assert norm["mean"] == pytest.approx([float(train_x.mean())], rel=1e-5)
    assert norm["std"] == pytest.approx([float(train_x.std())], rel=1e-5)
    tab = load_dataset("breast-cancer", "train").x
    per_feature = compute_normalization(tab, "per-feature")
    assert len(per_feature["mean"]) == 30
    np.testing.assert_allclose(per_feature["std"], tab.std(axis=0), rtol=1e-5)
    # flattened digits: corner pixels never vary; their std is 1, not 0
    flat = compute_normalization(train_x, "per-feature")
    assert min(flat["std"]) > 0 and 1.0 in flat["std"]


def test_sasa_training_and_export_paths_compute_the_same():
    torch.manual_seed(0)
    layer = LocalSelfAttention(8, 16)
    x = torch.randn(2, 8, 6, 7)
    layer.train()
    unfolded = layer(x)
    layer.eval()
    sliced = layer(x)
    assert unfolded.shape == sliced.shape == (2, 16, 6, 7)
    assert torch.allclose(unfolded, sliced, atol=1e-5)


def test_train_command_writes_a_weights_only_checkpoint(tmp_path):
    out = tmp_path / "mlp.pt"
    result = run("train", "mlp", "--out", str(out), "--epochs", "8", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "test accuracy (114 samples)" in result.output
    raw = torch.load(out, weights_only=True)  # loads without allowing any pickled object
    assert raw["format"] == FORMAT and raw["version"] == 1
    config = load_checkpoint(out)["config"]
    assert config["model"] == "mlp" and config["dataset"] == "breast-cancer"
    assert config["seed"] == 5 and config["epochs"] == 8
    assert config["input_shape"] == [1, 30]
    assert config["class_names"] == ["malignant", "benign"]
    assert 0.85 <= config["test_accuracy"] <= 1.0
    assert 1 <= config["best_epoch"] <= 8
    # existing output refused without --force, kept byte-identical
    before = sha256_file(out)
    assert_bad_input(run("train", "mlp", "--out", str(out), "--epochs", "1"), "--force")
    assert sha256_file(out) == before


def test_mlp_trains_on_flattened_images(tmp_path):
    report = train_zoo_model("mlp", "digits", tmp_path / "m.pt", epochs=3, show_progress=False)
    config = load_checkpoint(tmp_path / "m.pt")["config"]
    assert config["input_shape"] == [1, 64]
    assert len(config["normalization"]["mean"]) == 64
    assert report.test_accuracy > 0.8


def test_fast_epochs_in_a_log_print_the_first_and_last_not_every_one(tmp_path):
    """Without a terminal a 40-epoch MLP (well under a second) is two lines, not forty."""
    result = run("train", "mlp", "--data", "breast-cancer", "--epochs", "40",
                 "--out", str(tmp_path / "m.pt"))  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "train mlp: epoch" in line]
    assert lines[0].startswith("train mlp: epoch 1/40") and "epoch 40/40" in lines[-1]
    assert len(lines) <= 3, lines


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "cnn", "--data", "breast-cancer"], ["needs image data", "mlp"]),
        (["train", "mlp", "--data", "digits:test"], ["names a split"]),
        (["train", "mlp", "--data", "nosuchset"], ["unknown data set spec"]),
        (["train", "mlp", "--size", "large"], ["--size", "mlp comes in sizes small"]),
        (["train", "sasa", "--width", "12"], ["--width", "multiple of 8"]),
        (["train", "cnn", "--depth", "9"], ["--depth", "use 1 to 8"]),
        (["train", "cnn", "--size", "huge"], ["huge"]),
    ],
)
def test_train_bad_input_exits_2(tmp_path, args, fragments):
    out = tmp_path / "x.pt"
    assert_bad_input(run(*args, "--out", str(out)), *fragments)
    assert not out.exists()


def test_train_unknown_model_and_missing_folder(tmp_path):
    assert run("train", "resnet", "--out", str(tmp_path / "r.pt")).exit_code == 2
    assert_bad_input(run("train", "mlp", "--out", str(tmp_path / "no" / "r.pt")), "does not exist")


def test_refused_checkpoints(tmp_path):
    pickled = tmp_path / "object.pt"
    torch.save({"format": FORMAT, "version": 1, "config": Opaque()}, pickled)
    garbage = tmp_path / "random.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(QtoolError, match="not a weights-only checkpoint"):
        load_checkpoint(pickled)
    with pytest.raises(QtoolError, match="not a PyTorch checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(QtoolError, match="not a qtool checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(QtoolError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    assert set(load_state_dict(plain)) == {"w"}
    for path, fragment in [
        (pickled, "not a weights-only checkpoint"),
        (garbage, "not a PyTorch checkpoint"),
        (plain, "not a qtool checkpoint"),
    ]:
        before = sha256_file(path)
        out = tmp_path / "out.onnx"
        result = run("export", "cnn", "--weights", str(path), "--out", str(out))
        assert_bad_input(result, fragment, str(path))
        assert not out.exists()
        assert sha256_file(path) == before


def test_cli_lists_train_export_demo():
    result = run("--help")
    for name in ("train", "export", "demo"):
        assert name in result.output
    assert "Examples" in run("export", "--help").output


def _weights(path) -> dict:
    return load_checkpoint(path)["state_dict"]


def test_time_budget_stops_and_resume_ends_with_the_uninterrupted_weights(tmp_path):
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert run("train", "mlp", "--out", str(full), "--epochs", "4").exit_code == 0
    stopped = run("train", "mlp", "--out", str(part), "--epochs", "4", "--time-budget", "0")
    assert stopped.exit_code == 0, stopped.output
    assert "PARTIAL: time budget" in stopped.output
    assert f"continue with qtool train mlp --resume {part}" in stopped.output
    raw = torch.load(part, weights_only=True)
    assert raw["resume"]["epoch"] == 1 and raw["config"]["epochs_done"] == 1
    onnx_path = tmp_path / "part.onnx"  # a partial run exports its best epoch, marked so
    assert run("export", "mlp", "--weights", str(part), "--out", str(onnx_path)).exit_code == 0
    from qtool.modelfile.load import load_model
    from qtool.modelfile.metadata import qtool_metadata

    training = qtool_metadata(load_model(onnx_path))["training"]
    assert training["partial"] is True and training["epochs_done"] == 1
    resumed = run("train", "mlp", "--resume", str(part))
    assert resumed.exit_code == 0, resumed.output
    assert "4 of 4" in resumed.output
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resume" not in torch.load(part, weights_only=True)  # finished: no resume state
    assert_bad_input(run("train", "mlp", "--resume", str(part)), "finished run", "4 of 4")


def test_resume_refuses_other_settings_model_and_data(tmp_path):
    part = tmp_path / "part.pt"
    run("train", "mlp", "--out", str(part), "--epochs", "3", "--time-budget", "0")
    before = sha256_file(part)
    assert_bad_input(run("train", "mlp", "--resume", str(part), "--lr", "0.1"), "--lr", "0.003")
    assert_bad_input(
        run("train", "mlp", "--resume", str(part), "--batch-size", "8"), "--batch-size"
    )
    assert_bad_input(run("train", "cnn", "--resume", str(part)), "run of 'mlp'")
    assert_bad_input(
        run("train", "mlp", "--resume", str(part), "--width", "7"), "keeps its network"
    )
    assert_bad_input(
        run("train", "mlp", "--resume", str(part), "--data", "digits"), "--data", "dataset"
    )
    assert_bad_input(run("train", "mlp", "--resume", str(tmp_path / "no.pt")), "does not exist")
    assert sha256_file(part) == before
    assert_bad_input(run("train", "mlp"), "--out")


@pytest.mark.parametrize(
    ("signame", "code", "said"),
    [("SIGINT", 130, "interrupted after epoch"), ("SIGTERM", 143, "terminated (signal 15)")],
)
def test_ctrl_c_or_sigterm_keeps_the_last_epoch_and_exits_128_plus_signal(
    tmp_path, signame, code, said
):  # fmt: skip
    import os
    import signal
    import time

    out = tmp_path / "cnn.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qtool.cli", "train", "cnn", "--out", str(out), "--epochs", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = []
    for line in proc.stderr:  # without a terminal: epoch 1, then a line every few seconds
        lines.append(line)
        if "epoch " in line and "epoch 1/300" not in line:
            break
    time.sleep(0.1)
    proc.send_signal(getattr(signal, signame))
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == code, "".join(lines) + rest
    assert "s/epoch" in lines[0]
    done = torch.load(out, weights_only=True)["resume"]["epoch"]
    assert done >= 2 and f"{said}" in rest and f"epoch {done} of 300" in rest
    if signame == "SIGINT":
        resumed = run("train", "cnn", "--resume", str(out), "--time-budget", "0")
        assert resumed.exit_code == 0, resumed.output
        assert f"{done + 1} of 300" in resumed.output


def test_a_medium_sasa_trains_exports_and_rebuilds_from_its_checkpoint(tmp_path):
    """Seconds, not minutes: 24 images of 28 px, one epoch, width 8. The export goes through
    `qtool export`'s parity check (training form in torch vs the gather form in ONNX)."""
    from qtool.from_torch.export import ExportSettings, export_model
    from qtool.modelfile.load import load_model
    from qtool.modelfile.metadata import qtool_metadata
    from qtool.modelfile.roles import is_fixed
    from qtool.models.checkpoint import build_from_checkpoint, save_checkpoint

    data = {s: load_dataset("synthetic:lesion:28", s).take(24) for s in ("train", "val")}
    spec = get_spec("sasa")
    arch = spec.architecture("medium", width=8)
    seen = []
    result = train(
        spec,
        data["train"].x,
        data["train"].y,
        data["val"].x,
        data["val"].y,
        class_names=data["train"].class_names,
        dataset="synthetic:lesion:28",
        kind="image",
        epochs=1,
        architecture=arch,
        on_epoch=lambda stats, checkpoint: seen.append(stats),
    )
    assert result.config["architecture"] == {"size": "medium", "width": 8, "depth": 1}
    assert seen[0].seconds > 0
    ckpt = tmp_path / "sasa.pt"
    save_checkpoint(result.module.state_dict(), result.config, ckpt)
    rebuilt = build_from_checkpoint(load_checkpoint(ckpt))
    x = torch.from_numpy(data["val"].x[:4])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), result.module.eval()(x))
    out = tmp_path / "sasa.onnx"
    report = export_model("sasa", out, weights=ckpt, settings=ExportSettings(samples=32))
    assert report.parity["passed"] and report.parity["batches"] == [1, 32]
    model = load_model(out)
    assert qtool_metadata(model)["architecture"] == arch
    assert sum(is_fixed(n) for n in model.graph.node) == 16  # key and value, 8 layers
    torch_params = sum(p.numel() for p in result.module.parameters())
    # batch-norm statistics count, the 4860 fixed gather weights (17 %) do not
    assert abs(report.parameters - torch_params) < 0.05 * torch_params
