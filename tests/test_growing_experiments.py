"""tools/growing_experiments.py at a toy size: every stage (Table 1 rows, scenarios, learning
without forgetting, cumulative growth, analyses), the resumed run and the table rebuilt
from the JSON files alone (one test: the later runs start from the earlier ones' models)."""

import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
#: Digits for every task (embedded, no ../shared needed): source digits 0-5, target 1
#: digits 6-9, target 2 all ten digits; a tiny network and one epoch everywhere.
TOY = ["--source-data", "digits", "--source-classes", "0,1,2,3,4,5", "--target1", "digits",
       "--target1-classes", "6,7,8,9", "--target2", "digits", "--image-size", "8",
       "--width", "16", "--filters", "4,8,8", "--units", "4,8", "--depth-units", "8,16",
       "--source-limit", "240", "--limit", "96", "--validation-fraction", "0.25",
       "--source-epochs", "1", "--epochs", "1", "--retrain-epochs", "1", "--setting", "toy"]


def _script():
    spec = importlib.util.spec_from_file_location(
        "growing_experiments", REPO / "tools" / "growing_experiments.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_alexnet_has_the_paper_layer_names():
    script = _script()
    model = script.small_alexnet(4, width=8, filters=(2, 2, 2), image_size=8)
    names = [layer.name for layer in model.layers]
    for name in ("fc6", "drop6", "fc7", "drop7", "predictions", "predictions_activation"):
        assert name in names
    wide = script.small_alexnet_wide(4, script.parse_args(["--width", "8", "--filters", "2,2,2",
                                                           "--image-size", "8"]), 6, "wide")
    assert wide.get_layer("fc7").units == 14 and wide.get_layer("fc6").units == 8


@pytest.mark.slow
def test_experiments_script_at_toy_size(tmp_path):
    script = _script()
    out, work = tmp_path / "out", tmp_path / "work"
    common = [*TOY, "--output", str(out), "--work", str(work), "--seeds", "0"]
    # every stage once, with the Table-1 rows the later stages start from
    assert script.main([*common, "--rows", "ft,wa", "--scenarios", "new"]) == 0
    folder = out / "toy"
    names = {p.name for p in folder.glob("*.json")}
    expected = {"source", "ft", "wa4", "ft_new", "wa4_new", "wa4_lwf", "cum_wa4_t2", "ft_t2",
                "source_wide8", "wide8_t1", "wide8_t2", "wide8_scratch_t2", "analysis"}
    assert {f"{row}-seed0.json" for row in expected} <= names
    wa = json.loads((folder / "wa4-seed0.json").read_text())
    assert 0 <= wa["test_accuracy"] <= 1 and 0 <= wa["source_test_accuracy"] <= 1
    assert wa["scenario"] == "all"
    assert json.loads((folder / "wa4_new-seed0.json").read_text())["scenario"] == "new"
    cumulative = json.loads((folder / "cum_wa4_t2-seed0.json").read_text())
    ft_t2 = json.loads((folder / "ft_t2-seed0.json").read_text())
    assert cumulative["params"] > ft_t2["params"]  # grown twice
    analysis = json.loads((folder / "analysis-seed0.json").read_text())
    for name in analysis["figures"].values():
        assert (folder / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    assert set(analysis["curves"]) == {"epochs", "old (fc7)", "new (fc7+)", "combined"}
    assert analysis["curves"]["epochs"] == [0, 1]

    table = (folder / "README.md").read_text()
    for heading in ("Tables 1-2", "Table 3", "scenarios", "Table 4", "Tables 6-8", "Analyses"):
        assert heading in table
    for claim in script.CLAIMS:
        assert claim in table

    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert script.main([*common, "--rows", "ft,wa", "--scenarios", "new"]) == 0  # nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} == stamps
    (folder / "README.md").unlink()
    assert script.main([*common, "--table"]) == 0
    assert (folder / "README.md").read_text() == table

    # the other Table-1 variants train from the same source network
    assert script.main([*common, "--stages", "table1", "--rows", "da,dwa,wwa,wa_nonorm"]) == 0
    names = {p.name for p in folder.glob("*.json")}
    for row in ("da8", "da16", "dwa4", "dwa8", "wwa4", "wwa8", "wa_nonorm4"):
        assert f"{row}-seed0.json" in names
    wwa = json.loads((folder / "wwa4-seed0.json").read_text())
    assert wwa["params"] > wa["params"]
