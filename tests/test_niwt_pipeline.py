"""niwt.fit / evaluate / load_run and `keras-apps niwt fit|evaluate|explain` end to end on the
zero-set-up digits, with the seven-segment display as class attributes."""

import json

import numpy as np
import pytest

from keras_apps import niwt
from keras_apps.niwt.attributes import ClassAttributes
from keras_apps.niwt.models import vgg_niwt_cifar
from keras_apps_cli import main

#: Segments a..g lit for each digit on a seven-segment display (a: top, b: upper right,
#: c: lower right, d: bottom, e: lower left, f: upper left, g: middle).
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg", 6: "acdefg", 7: "abc",
            8: "abcdefg", 9: "abcdfg"}


def _segments():
    matrix = np.array([[float(s in SEGMENTS[d]) for s in "abcdefg"] for d in range(10)], "float32")
    return ClassAttributes(class_names=tuple(str(d) for d in range(10)),
                           attribute_names=tuple(f"segment_{s}" for s in "abcdefg"), matrix=matrix)


def _tiny_network():
    return vgg_niwt_cifar(8, input_shape=(32, 32, 1), widths=(4, 4, 8), fc_units=16, name="tiny_niwt")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("niwt") / "run"
    result = niwt.fit(_tiny_network, "digits", attributes=_segments(), unseen=(3, 8), epochs=1, batch_size=64,
                      importance_images=4, limit=10, output_dir=folder, verbose=0)
    return result, folder


def test_fit_extends_the_network_to_all_classes(run):
    result, folder = run
    assert result.model.output.shape[-1] == 10 and result.seen_model.output.shape[-1] == 8
    kernel = result.model.get_layer("predictions").kernel.numpy()
    seen = [0, 1, 2, 4, 5, 6, 7, 9]
    np.testing.assert_array_equal(kernel[:, seen], result.seen_model.get_layer("predictions").kernel.numpy())
    test = result.metrics["test"]
    assert set(test) >= {"acc_s", "acc_u", "H", "per_class"} and test["images"] == 359
    expected_h = 0 if test["acc_s"] + test["acc_u"] == 0 else \
        2 * test["acc_s"] * test["acc_u"] / (test["acc_s"] + test["acc_u"])
    assert test["H"] == pytest.approx(expected_h)
    assert test["acc_u"] == pytest.approx(np.mean([test["per_class"][3], test["per_class"][8]]))
    for name in ("niwt.keras", "mapping.npz", "niwt.json", "seen/model.keras"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "niwt.json").read_text())
    assert meta["seen"] == seen and meta["unseen"] == [3, 8] and meta["layer"] == "block3_conv2"


def test_a_finished_run_is_loaded_and_other_settings_are_refused(run):
    result, folder = run
    again = niwt.fit(_tiny_network, "digits", attributes=_segments(), unseen=(3, 8), epochs=1, batch_size=64,
                     importance_images=4, limit=10, output_dir=folder, verbose=0)
    np.testing.assert_array_equal(again.model.get_layer("predictions").kernel.numpy(),
                                  result.model.get_layer("predictions").kernel.numpy())
    with pytest.raises(ValueError, match=r"other settings \(lam\)"):
        niwt.fit(_tiny_network, "digits", attributes=_segments(), unseen=(3, 8), epochs=1, batch_size=64,
                 importance_images=4, limit=10, output_dir=folder, lam=0.5, verbose=0)
    model, mapping, meta = niwt.load_run(folder)
    assert mapping.layer == meta["layer"] and model.output.shape[-1] == 10


def test_fit_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"`unseen`=\[3, 12\]: expected distinct class ids in 0..9"):
        niwt.fit(_tiny_network, "digits", attributes=_segments(), unseen=(3, 12), output_dir=tmp_path)
    with pytest.raises(ValueError, match="no class-attribute matrix named 'digits'"):
        niwt.fit(_tiny_network, "digits", unseen=(3,), output_dir=tmp_path)
    with pytest.raises(ValueError, match="`importance_images` must be a positive integer, got 0"):
        niwt.fit(_tiny_network, "digits", attributes=_segments(), importance_images=0, output_dir=tmp_path)


def test_cli_evaluate_and_explain(run, tmp_path, capsys):
    import tensorflow as tf

    _, folder = run
    assert main(["niwt", "evaluate", "--run", str(folder), "--limit", "40"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["images"] == 40 and set(printed) >= {"acc_s", "acc_u", "H"}
    picture = np.random.RandomState(0).randint(0, 255, (40, 40, 3)).astype("uint8")
    image = tmp_path / "eight.png"
    image.write_bytes(tf.io.encode_png(picture).numpy())
    out = tmp_path / "explained"
    args = ["niwt", "explain", str(image), "--run", str(folder), "--class", "8", "--top-k", "3", "--output", str(out)]
    assert main(args) == 0
    record = json.loads((out / "explanations.json").read_text())["explanations"][0]
    assert record["class"] == "8" and record["unseen"] and len(record["attributes"]) == 3
    assert all(a.startswith("segment_") for a, _ in record["attributes"])
    assert (out / "eight.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args) != 0  # existing pictures are kept without --overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["niwt", "explain", str(image), "--run", str(folder), "--class", "eleven",
                 "--output", str(out), "--overwrite"]) != 0
    assert "--class 'eleven' is not one of the run's classes" in capsys.readouterr().err


def test_cli_fit_bad_input(tmp_path, capsys):
    assert main(["niwt", "fit", "--lam", "-1"]) != 0
    assert "expected a finite number >= 0, got '-1'" in capsys.readouterr().err
    assert main(["niwt", "fit", "--unseen", "a,b"]) != 0
    assert "expected comma-separated class ids" in capsys.readouterr().err
    assert main(["niwt", "fit", "--data", "digits", "--output", str(tmp_path / "run")]) != 0
    assert "no class-attribute matrix named 'digits'" in capsys.readouterr().err
    assert main(["niwt", "evaluate", "--run", str(tmp_path / "nothing")]) != 0
    assert "is not a finished NIWT run" in capsys.readouterr().err


def test_mapping_validation_classes_must_be_seen(tmp_path):
    with pytest.raises(ValueError, match=r"`mapping_validation_classes` \[3\] are not seen classes"):
        niwt.fit(_tiny_network, "digits", attributes=_segments(), unseen=(3, 8), mapping_validation_classes=[3],
                 output_dir=tmp_path)
