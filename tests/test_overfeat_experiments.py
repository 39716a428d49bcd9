"""tools/overfeat_experiments.py at a toy size on real BCCD images: every configuration, the
resumed run, the figures and the table rebuilt from the JSON files alone; and the table's
statistics against hand-computed means and sample standard deviations."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BCCD = REPO.parent / "shared" / "data" / "detection" / "bccd" / "BCCD"
TOY = ["--limit", "5", "--epochs", "1", "--regressor-epochs", "1", "--batch-size", "32",
       "--train-scales", "1,2", "--test-scales", "1,2", "--score-thresholds", "0.3",
       "--merge-thresholds", "0.5"]


def _script():
    spec = importlib.util.spec_from_file_location("overfeat_experiments", REPO / "tools" / "overfeat_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(seed, config, m_ap, ap, top1, top5):
    return {"seed": seed, "config": config, "scales": [1.0], "test_mAP": m_ap,
            "test_ap": dict(zip(("RBC", "WBC", "Platelets"), ap)), "localization_error_top1": top1,
            "localization_error_top5": top5, "test_seconds_per_image": 0.5, "score_threshold": 0.5,
            "merge_threshold": 0.5, "test_images": 72, "val_images": 87}


def test_table_statistics_by_hand(tmp_path):
    script = _script()
    for seed, m_ap in ((0, 0.30), (1, 0.40), (2, 0.50)):
        path = tmp_path / f"seed{seed}" / "single_plain.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_record(seed, "single_plain", m_ap, (0.6, 0.2, 0.1 * seed), 0.5, 0.25)))
    table = script.build_table(tmp_path)
    # mean 0.40, sample sd sqrt(((0.1)^2 + 0 + (0.1)^2) / 2) = 0.1 -> "40.0 ± 10.0"
    row = next(line for line in table.splitlines() if line.startswith("| single-scale"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "40.0 ± 10.0"
    assert cells[2:5] == ["60.0 ± 0.0", "20.0 ± 0.0", "10.0 ± 10.0"]
    assert cells[5:7] == ["50.0 ± 0.0", "25.0 ± 0.0"] and "(n=3)" in cells[0]
    with pytest.raises(SystemExit, match="No result"):
        script.build_table(tmp_path / "empty")


def test_main_object_is_every_box_of_the_largest_box_class():
    script = _script()
    record = {"boxes": np.array([[0, 0, 10, 10], [0, 0, 50, 40], [5, 5, 30, 30]], np.float32),
              "classes": np.array([1, 2, 2])}
    main = script.main_object(record)
    np.testing.assert_array_equal(main["classes"], [2, 2])
    np.testing.assert_array_equal(main["boxes"], record["boxes"][1:])


@pytest.mark.slow
def test_experiments_script_at_toy_size(tmp_path):
    if not BCCD.is_dir():
        pytest.skip("BCCD is not in ../shared/data/detection/bccd (see ../shared/data/PROVENANCE.md)")
    script = _script()
    out, runs = tmp_path / "out", tmp_path / "runs"
    common = [*TOY, "--output", str(out), "--runs", str(runs), "--seeds", "0"]
    assert script.main(common) == 0
    names = {p.name for p in (out / "seed0").glob("*.json")}
    assert names == {"training.json", "classification.json", "single_plain.json", "single_offset.json",
                     "multi_plain.json", "multi_offset.json"}
    classification = json.loads((out / "seed0" / "classification.json").read_text())
    assert set(classification["top1_error"]) == {"single_view", "ten_view", "multi_scale"}
    assert all(0 <= v <= 1 for v in classification["top1_error"].values())
    offset = json.loads((out / "seed0" / "multi_offset.json").read_text())
    assert offset["scales"] == [1.0, 2.0] and offset["offset_pooling"] is True
    assert 0 <= offset["test_mAP"] <= 1 and 0 <= offset["localization_error_top5"] <= 1
    assert offset["localization_error_top5"] <= offset["localization_error_top1"]
    assert offset["test_images"] == 5 and offset["settings"]["limit"] == 5
    training = json.loads((out / "seed0" / "training.json").read_text())
    assert training["field_of_view"] == 221 and training["stride"] == 36
    assert set(training["train_windows"]) == {"RBC", "WBC", "Platelets", "background"}
    assert (runs / "seed0" / "classifier" / "model.keras").is_file()
    # resumed: nothing is trained or evaluated again, the JSONs stay as they are
    before = {p: p.read_bytes() for p in (out / "seed0").glob("*.json")}
    assert script.main(common) == 0
    assert before == {p: p.read_bytes() for p in (out / "seed0").glob("*.json")}
    # the table from the JSONs alone, and the example pictures
    (out / "README.md").unlink()
    assert script.main(["--table", "--output", str(out)]) == 0
    table = (out / "README.md").read_text()
    assert "multi-scale (1, 2), offset pooling (n=1)" in table and "5 images" in table
    assert "| 10 views (4 corners + centre, flipped) |" in table
    assert script.main([*common, "--figures"]) == 0
    assert len(list((out / "figures").glob("*.png"))) >= 2
