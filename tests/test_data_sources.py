"""The data-source registry: every entry parses and loads, and the spec functions follow it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qtool.data import sources
from qtool.data.dataset import SPLITS, Dataset, DataSpec
from qtool.data.sources import SOURCES, Source, load_dataset, parse_spec, spec_help
from qtool.errors import QtoolError
from qtool.registry import Registry


def _npz(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(
        path,
        train_images=np.zeros((4, 5, 5), np.uint8),
        train_labels=np.array([0, 1, 0, 1]),
        test_images=np.full((2, 5, 5), 255, np.uint8),
        test_labels=np.array([1, 0]),
    )
    return path


def _folder(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "f" / label).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "f" / label / "0.png")
    return tmp_path / "f"


def _dicom(tmp_path):
    from dicom_files import write_dicom

    for label in ("a", "b"):
        (tmp_path / "d" / label).mkdir(parents=True)
        write_dicom(tmp_path / "d" / label / "0.dcm", np.eye(4, dtype=np.uint8))
    return tmp_path / "d"


def test_every_registered_source_parses_and_loads(tmp_path):
    pytest.importorskip("pydicom")
    specs = {
        "digits": "digits",
        "breast-cancer": "breast-cancer",
        "npz": f"npz:{_npz(tmp_path)}",
        "folder": f"folder:{_folder(tmp_path)}",
        "dicom": f"dicom:{_dicom(tmp_path)}",
        "synthetic": "synthetic:lesion:28",
    }
    assert sorted(SOURCES.names()) == sorted(specs), "a new source needs a case here"
    for name, spec in specs.items():
        parsed = parse_spec(spec)
        assert parsed.source == name and parsed.split is None
        data = load_dataset(spec, default_split="train")
        assert isinstance(data, Dataset) and len(data) > 0 and data.x.dtype == np.float32
        assert data.y is not None and len(data.y) == len(data)
        assert SOURCES.get(name).help  # every source has its help line


def test_split_suffix_and_split_argument():
    spec = parse_spec("breast-cancer:val")
    assert spec == DataSpec("breast-cancer", None, "val") and str(spec) == "breast-cancer:val"
    assert load_dataset("breast-cancer:val").split == "val"
    assert load_dataset("breast-cancer:val", split="train").split == "train"  # argument wins
    assert load_dataset("breast-cancer").split == "test"  # the default default
    assert load_dataset("breast-cancer", default_split="train").split == "train"
    with pytest.raises(QtoolError, match="unknown split 'all'"):
        load_dataset("breast-cancer", split="all")


def test_arguments_keep_their_colons_and_expand_home():
    spec = parse_spec("npz:/data/a:b.npz:val")
    assert spec.source == "npz" and str(spec.path) == "/data/a:b.npz" and spec.split == "val"
    assert spec.argument == "/data/a:b.npz"
    assert not str(parse_spec("folder:~/scans").path).startswith("~")
    assert parse_spec(" Digits ").source == "digits"


@pytest.mark.parametrize("spec", ["mnist", "digits:extra", "npz", "npz:", "folder::test", ""])
def test_unknown_or_malformed_spec_lists_every_source(spec):
    with pytest.raises(QtoolError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert message.startswith(f"unknown data set spec {spec!r}")
    for source in SOURCES:
        assert source.usage in message
    assert ":train, :val or :test" in message


def test_load_errors_name_the_parameter_that_carried_the_spec(tmp_path):
    with pytest.raises(QtoolError) as info:
        load_dataset("nosuch", param="calib")
    assert info.value.param == "calib"
    with pytest.raises(QtoolError) as info:
        load_dataset(f"npz:{tmp_path / 'missing.npz'}", param="eval_data")
    assert info.value.param == "eval_data" and "does not exist" in str(info.value)


def test_a_new_source_is_one_registry_entry(monkeypatch):
    """parse_spec, load_dataset and the usage line all come from the registry."""

    def load_ones(spec: DataSpec, split: str, explicit: bool) -> Dataset:
        n = int(spec.argument)
        return Dataset(f"ones:{n}", split, np.ones((n, 3), np.float32), None, [], "tabular")

    def check(argument: str) -> None:
        if not argument.isdigit():
            raise QtoolError(f"ones:{argument}: give a count")

    registry: Registry[Source] = Registry("data source")
    for source in SOURCES:
        registry.add(source.name, source)
    registry.add("ones", Source("ones", "n rows of ones", load_ones, argument="N", check=check))
    monkeypatch.setattr(sources, "SOURCES", registry)

    assert "ones:N" in spec_help()
    assert parse_spec("ones:5:val") == DataSpec("ones", "5", "val")
    data = load_dataset("ones:5:val")
    assert data.split == "val" and data.x.shape == (5, 3)
    with pytest.raises(QtoolError, match="give a count"):
        parse_spec("ones:many")


def test_spec_help_names_the_splits_and_sources_in_order():
    assert spec_help() == (
        "use digits, breast-cancer, npz:PATH, folder:PATH, dicom:FOLDER or synthetic:KIND[:SIZE], "
        "optionally ending in :train, :val or :test"
    )
    assert SPLITS == ("train", "val", "test")
    usage = [line.split()[0] for line in sources.sources_help().splitlines()[2:]]
    assert usage == [s.usage for s in SOURCES]
