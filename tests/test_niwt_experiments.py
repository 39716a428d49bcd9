"""tools/niwt_experiments.py at toy size: every stage, JSON files and the table."""

import json
import pathlib
import sys

import pytest

from keras_apps.data import cifar10

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

pytestmark = pytest.mark.slow


def test_toy_run_writes_every_record_and_the_table(tmp_path):
    if cifar10.find_shards()[0] is None:
        pytest.skip("CIFAR-10 JPEG shards not found under ../shared/data (see PROVENANCE.md)")
    import niwt_experiments as experiments

    output = tmp_path / "results"
    args = ["--splits", "0", "--epochs", "1", "--limit", "12", "--widths", "4,4,8", "--fc-units", "8",
            "--importance-images", "6", "--validation-unseen", "6", "--test-limit", "100", "--ale-epochs", "2",
            "--max-steps", "45", "--lams", "0,0.1", "--niwt-learning-rates", "0.01", "--work", str(tmp_path / "work"), "--output", str(output)]
    experiments.main(args)
    for method in experiments.METHODS:
        record = json.loads((output / f"{method}-split0.json").read_text())
        assert record["unseen"] == [3, 9] and record["test_images"] == 100
        assert 0 <= record["test"]["H"] <= 1
        if method == "seen_only":
            assert record["test"]["acc_u"] == 0
        else:
            assert json.dumps(record["chosen"]) in record["validation"]
    niwt = json.loads((output / "niwt-split0.json").read_text())
    assert set(niwt["chosen"]) == {"lam", "learning_rate"}
    assert niwt["explanations"] and (output / "explanations" / niwt["explanations"][0]["picture"]).is_file()
    sweep = json.loads((output / "lambda-split0.json").read_text())
    assert sorted(json.loads(k)["lam"] for k in sweep["test"]) == [0, 0.1]
    table = (output / "README.md").read_text()
    assert "| NIWT (attributes) | 1 |" in table and "## Effect of lambda" in table
    before = (output / "niwt-split0.json").read_text()
    experiments.main(args)  # finished splits are skipped
    assert (output / "niwt-split0.json").read_text() == before


def test_toy_awa2_run_from_an_image_folder(tmp_path):
    """The AwA2 path (xlsa17's classes, images from an AwA2-style folder) on tiny generated JPEGs."""
    import numpy as np
    import tensorflow as tf

    from keras_apps.data import DatasetNotFoundError
    from keras_apps.niwt import data as zsl

    try:
        attributes = zsl.load_awa2()
    except DatasetNotFoundError as error:
        pytest.skip(f"AwA2 attribute files not in ../shared/data/zsl/awa2 ({error})")
    import niwt_experiments as experiments

    rng = np.random.RandomState(0)
    for k, name in enumerate(attributes.class_names):
        folder = tmp_path / "awa2" / "JPEGImages" / name
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.normal(40 + 3 * k, 30, (16, 16, 3)), 0, 255).astype("uint8")
            (folder / f"{name}_{i:04d}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    output = tmp_path / "results"
    experiments.main([
        "--data", "awa2", "--data-dir", str(tmp_path / "awa2"), "--splits", "0", "--image-size", "16",
        "--epochs", "1", "--limit", "3", "--widths", "4,4,8", "--fc-units", "8", "--importance-images", "2",
        "--validation-unseen", "2", "--ale-epochs", "1", "--max-steps", "45", "--lams", "0,0.1",
        "--niwt-learning-rates", "0.01", "--work", str(tmp_path / "work"), "--output", str(output)])
    niwt = json.loads((output / "niwt-split0.json").read_text())
    assert niwt["data"] == "awa2" and sorted(niwt["unseen"]) == sorted(attributes.unseen)
    assert sorted(niwt["validation_classes"]) == sorted(attributes.validation)
    assert niwt["explanations"]
    assert (output / "README.md").read_text().startswith("# NIWT on AwA2")
