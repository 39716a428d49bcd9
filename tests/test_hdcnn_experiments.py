"""tools/hdcnn_experiments.py at a toy size: every row, stage and variant, the resumed run,
the table rebuilt from the JSON files alone, and the CIFAR-100 (tfds) path offline."""

import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TOY = ["--coarse", "2", "--limit", "100", "--block-epochs", "1", "--fine-epochs", "1",
       "--finetune-epochs", "1", "--validation-fraction", "0.2", "--betas", "inf,1",
       "--compression", "2x8", "--timing-images", "32", "--timing-repeats", "1"]


def _script():
    spec = importlib.util.spec_from_file_location("hdcnn_experiments", REPO / "tools" / "hdcnn_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_experiments_script_at_toy_size(tmp_path):
    script = _script()
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["--data", "digits", "--output", str(out), "--work", str(work), *TOY]
    assert script.main([*common, "--seeds", "0,1", "--variants", "hdcnn"]) == 0
    # the other variants on one seed, reusing its building block and hierarchy
    assert script.main([*common, "--seeds", "0", "--stages", "train",
                        "--variants", "hdcnn_no_consistency,hdcnn_disjoint,hdcnn_no_shared"]) == 0
    folder = out / "digits"
    names = sorted(p.name for p in folder.glob("*.json"))
    for row in ("building_block", "model_averaging", "hdcnn_before_finetune", "hdcnn", "conditional",
                "compression", "timing"):
        assert f"{row}-seed0.json" in names and f"{row}-seed1.json" in names
    for row in ("hdcnn_no_consistency", "hdcnn_disjoint", "hdcnn_no_shared"):
        assert f"{row}-seed0.json" in names
    # the disjoint variant's sets partition the classes; the overlapping one's may not
    disjoint = json.loads((folder / "hdcnn_disjoint-seed0.json").read_text())
    assert sum(disjoint["set_sizes"]) == 10
    averaging = json.loads((folder / "model_averaging-seed0.json").read_text())
    assert averaging["partner_seed"] == 1
    sweep = json.loads((folder / "conditional-seed0.json").read_text())["sweep"]
    assert sweep[0]["beta"] == float("inf") and sweep[0]["mean_components_run"] == 2.0
    assert sweep[0]["test_top1_error"] == pytest.approx(sweep[0]["full_test_top1_error"])
    assert 1.0 <= sweep[1]["mean_components_run"] <= 2.0
    timing = json.loads((folder / "timing-seed0.json").read_text())["seconds_per_image"]
    assert set(timing) == {"building_block", "hdcnn"} and all(t > 0 for t in timing.values())
    compression = json.loads((folder / "compression-seed0.json").read_text())
    assert compression["sweep"][0]["model_bytes"] < compression["base_model_bytes"]

    table = (folder / "README.md").read_text()
    for label in script.LABELS.values():
        assert label in table
    assert "Table 2a" in table and "Table 2b" in table
    assert (folder / "sweeps.png").read_bytes()[:4] == b"\x89PNG"

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert script.main([*common, "--seeds", "0,1", "--variants", "hdcnn"]) == 0  # resumes: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} == stamps
    (folder / "README.md").unlink()
    assert script.main([*common, "--table"]) == 0
    assert (folder / "README.md").read_text() == table


@pytest.mark.slow
def test_cifar100_path_through_tfds_offline(tmp_path):
    """The paper-scale path (CIFAR-100 from tensorflow-datasets), on tfds' mock data."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import numpy as np
    import tensorflow as tf

    def balanced_cifar100(self, split, decoders=None, read_config=None, **kwargs):
        count = 500 if split.startswith("train") else 100  # every fine class, 5 / 1 times
        images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(count) % 100
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": labels, "coarse_label": labels // 5, "id": [b"x"] * count}
        )

    script = _script()
    with tfds.testing.mock_data(as_dataset_fn=balanced_cifar100):
        assert script.main([
            "--data", "cifar100", "--download", "--seeds", "0", "--variants", "hdcnn", "--stages", "train",
            "--output", str(tmp_path / "out"), "--work", str(tmp_path / "work"), *TOY,
            "--validation-fraction", "0.5", "--limit", "0",
        ]) == 0
    record = json.loads((tmp_path / "out" / "cifar100" / "hdcnn-seed0.json").read_text())
    assert record["params"] > 0 and sum(record["set_sizes"]) >= 100


def test_bad_arguments_are_refused():
    script = _script()
    with pytest.raises(SystemExit):
        script.parse_args(["--variants", "hdcnn,nonsense"])
    with pytest.raises(SystemExit):
        script.parse_args(["--betas", "inf,0"])
