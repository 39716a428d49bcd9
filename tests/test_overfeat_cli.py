"""``keras-apps overfeat classify|localize|detect`` on a saved system whose outputs are known
in closed form (constant class probabilities, a fixed box per window), on real image files."""

import json
import re

import keras
import numpy as np
import pytest

import keras_apps
from keras_apps import cli, overfeat

MODEL = "overfeat_accurate_small"
PROBABILITIES = np.array([0.6, 0.1, 0.05, 0.25], np.float32)  # RBC, WBC, Platelets, background


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overfeat_cli")
    keras.utils.set_random_seed(0)
    classifier = keras_apps.build(MODEL, classes=4)
    regressor = overfeat.regression_head(classifier, classes=3)
    for layer in classifier.layers + regressor.layers:
        if layer.weights and layer.name not in ("predictions", "boxes"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    kernel, _ = classifier.get_layer("predictions").get_weights()
    classifier.get_layer("predictions").set_weights([np.zeros_like(kernel), np.log(PROBABILITIES)])
    kernel, _ = regressor.get_layer("boxes").get_weights()
    regressor.get_layer("boxes").set_weights([np.zeros_like(kernel), np.tile([-0.25, -0.25, 0.25, 0.25], 3)])
    system = overfeat.overfeat_system(classifier, regressor)
    overfeat.save_system(system, folder / "system.keras", class_names=["RBC", "WBC", "Platelets"],
                         scales=(1.0,), score_threshold=0.08, merge_threshold=0.5)
    classifier.save(folder / "classifier.keras")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = []
    for name, shape in (("a.png", (240, 300, 3)), ("b.jpg", (230, 260, 3))):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        encoded = tf.io.encode_png(pixels) if name.endswith(".png") else tf.io.encode_jpeg(pixels)
        (folder / name).write_bytes(encoded.numpy())
        images.append(folder / name)
    keras.backend.clear_session()
    return {"system": folder / "system.keras", "classifier": folder / "classifier.keras", "images": images}


def error_line(capsys):
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert re.match(r"keras-apps overfeat: error: ", lines[0]), lines[0]
    return lines[0]


def test_detect_writes_pictures_and_predictions(files, tmp_path, capsys):
    out = tmp_path / "det"
    argv = ["overfeat", "detect", *map(str, files["images"]), "--model", str(files["system"]), "--output", str(out)]
    assert cli.main(argv) == 0
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["settings"]["class_names"] == ["RBC", "WBC", "Platelets"]
    assert payload["settings"]["score_threshold"] == pytest.approx(0.08)
    for record in payload["predictions"]:
        classes = {b["class"] for b in record["boxes"]}
        assert classes == {"RBC", "WBC"}  # 0.6 and 0.1 pass 0.08; 0.05 and the background do not
        for b in record["boxes"]:
            x1, y1, x2, y2 = b["box"]
            assert x2 - x1 == pytest.approx(221 / 2, abs=1e-3)  # t = +-0.25 of the 221-px window
    assert (out / "a.png").stat().st_size > 0 and (out / "b.png").stat().st_size > 0
    assert "2 pictures" in capsys.readouterr().out
    # the same output again is refused and nothing is touched
    before = (out / "predictions.json").read_bytes()
    assert cli.main(argv) == 2
    assert "exists" in error_line(capsys) and (out / "predictions.json").read_bytes() == before
    assert cli.main([*argv, "--overwrite", "--score-threshold", "0.5"]) == 0
    payload = json.loads((out / "predictions.json").read_text())
    assert all({b["class"] for b in r["boxes"]} == {"RBC"} for r in payload["predictions"])


def test_localize_and_classify(files, tmp_path, capsys):
    out = tmp_path / "loc"
    assert cli.main(["overfeat", "localize", str(files["images"][0]), "--model", str(files["system"]),
                     "--top-k", "2", "--offset-pooling", "--output", str(out)]) == 0
    record = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert len(record["boxes"]) == 2 and {b["class"] for b in record["boxes"]} == {"RBC"}
    out = tmp_path / "cls"
    assert cli.main(["overfeat", "classify", str(files["images"][1]), "--model", str(files["classifier"]),
                     "--class-names", "RBC,WBC,Platelets,background", "--scales", "1,1.2",
                     "--output", str(out)]) == 0
    top = json.loads((out / "predictions.json").read_text())["predictions"][0]["top"]
    assert [t["class"] for t in top] == ["RBC", "background", "WBC", "Platelets"]
    np.testing.assert_allclose([t["score"] for t in top], [0.6, 0.25, 0.1, 0.05], atol=1e-5)
    assert "RBC 0.600" in capsys.readouterr().out
    # a system: the class scores of its classifier, the background (its last class) not listed
    out = tmp_path / "cls_system"
    assert cli.main(["overfeat", "classify", str(files["images"][0]), "--model", str(files["system"]),
                     "--output", str(out)]) == 0
    top = json.loads((out / "predictions.json").read_text())["predictions"][0]["top"]
    assert [t["class"] for t in top] == ["RBC", "WBC", "Platelets"]


def test_bad_input(files, tmp_path, capsys):
    system = str(files["system"])
    assert cli.main(["overfeat", "detect", str(tmp_path / "missing.jpg"), "--model", system,
                     "--output", str(tmp_path / "x")]) == 2
    assert "missing.jpg" in error_line(capsys)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert cli.main(["overfeat", "detect", str(text), "--model", system, "--output", str(tmp_path / "y")]) == 2
    assert "notes.png" in error_line(capsys)
    small = tmp_path / "small.png"
    import tensorflow as tf

    small.write_bytes(tf.io.encode_png(np.zeros((100, 100, 3), np.uint8)).numpy())
    assert cli.main(["overfeat", "detect", str(small), "--model", system, "--output", str(tmp_path / "z")]) == 2
    assert "too small" in error_line(capsys)
    assert cli.main(["overfeat", "localize", str(files["images"][0]), "--model", "overfeat_fast"]) == 2
    assert "trained system" in error_line(capsys)
    assert cli.main(["overfeat", "detect", str(files["images"][0]), "--model", system,
                     "--class-names", "a,b", "--output", str(tmp_path / "w")]) == 2
    assert "class names" in error_line(capsys)
    assert cli.main(["overfeat", "detect", str(files["images"][0]), "--model", system,
                     "--score-threshold", "2"]) == 2
    assert "[0, 1], got '2'" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_on_bccd_then_detect(tmp_path, capsys):
    import pathlib as _pathlib

    bccd = _pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "detection" / "bccd" / "BCCD"
    if not bccd.is_dir():
        pytest.skip("BCCD is not in ../shared/data/detection/bccd (see ../shared/data/PROVENANCE.md)")
    run = tmp_path / "run"
    argv = ["overfeat", "fit", "--data", "bccd", "--limit", "4", "--epochs", "1", "--regressor-epochs", "1",
            "--scales", "1,2", "--batch-size", "32", "--output", str(run)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "training windows: RBC" in text and "validation mAP" in text
    meta = json.loads((run / "system.json").read_text())
    assert meta["class_names"] == ["RBC", "WBC", "Platelets"] and meta["scales"] == [1.0, 2.0]
    assert cli.main(argv) == 0  # finished phases are read back, not trained again
    image = sorted((bccd / "JPEGImages").glob("*.jpg"))[0]
    assert cli.main(["overfeat", "detect", str(image), "--model", str(run / "system.keras"),
                     "--output", str(tmp_path / "det")]) == 0
    assert (tmp_path / "det" / f"{image.stem}.png").is_file()
