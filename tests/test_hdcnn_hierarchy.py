"""HD-CNN category hierarchy: learning (spectral clustering + overlap), targets, files, plot.

References are independent of the code: planted block structures, hand-computed u_k(j)
values, naive loops, the authors' published set sizes and membership histogram."""

import ast
import collections
import json
import pathlib

import numpy as np
import pytest

from keras_apps.hdcnn.hierarchy import Hierarchy, confusion_matrix, learn_hierarchy
from tests.conftest import shared_data

MODULE = pathlib.Path(__file__).resolve().parents[1] / "keras_apps" / "hdcnn" / "hierarchy.py"

#: Published by the authors for their K=9 CIFAR-100 NIN hierarchy (spec, "What the authors'
#: own code does"): overlapping set sizes, 394 memberships in all.
AUTHORS_K9_SIZES = [25, 51, 80, 80, 36, 25, 27, 27, 43]
AUTHORS_K9_HISTOGRAM = {1: 4, 2: 23, 3: 15, 4: 21, 5: 17, 6: 11, 7: 8, 8: 1}


def _partition(groups):
    return {frozenset(int(j) for j in group) for group in groups}


def _planted_confusion(num_fine, num_blocks, rng, within=0.2, noise=0.01):
    """A row-normalised confusion with ``num_blocks`` blocks of shuffled classes: correct
    class 1, confusion inside a block U(0, within), everywhere U(0, noise)."""
    blocks = np.array_split(rng.permutation(num_fine), num_blocks)
    block_of = np.empty(num_fine, dtype=int)
    for b, members in enumerate(blocks):
        block_of[members] = b
    confusion = rng.uniform(0.0, noise, (num_fine, num_fine))
    for j in range(num_fine):
        mates = np.flatnonzero(block_of == block_of[j])
        confusion[j, mates] += rng.uniform(0.0, within, len(mates))
        confusion[j, j] += 1.0
    return confusion / confusion.sum(axis=1, keepdims=True), blocks


# -- learning the disjoint mapping ---------------------------------------------------------


@pytest.mark.parametrize(
    "num_fine,num_blocks,trial",
    [(12, 3, 0), (12, 3, 1), (12, 4, 0), (12, 4, 1), (30, 5, 0)],
)
def test_planted_blocks_are_recovered(num_fine, num_blocks, trial):
    rng = np.random.default_rng(100 * num_blocks + trial)
    confusion, blocks = _planted_confusion(num_fine, num_blocks, rng)
    tree = learn_hierarchy(confusion, num_blocks)
    assert tree.num_coarse == num_blocks and tree.num_fine == num_fine
    assert _partition(tree.coarse_sets) == _partition(blocks)
    assert not tree.is_overlapping
    # numbered by smallest fine id: the first member of coarse k precedes that of k + 1
    firsts = [members[0] for members in tree.coarse_sets]
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_counts_and_exact_blocks_without_noise():
    """Unnormalised counts are row-normalised first; a disconnected graph (no confusion
    across blocks) is still split along its blocks."""
    rng = np.random.default_rng(7)
    order = rng.permutation(12)
    blocks = [order[:4], order[4:8], order[8:]]
    counts = np.zeros((12, 12))
    for members in blocks:
        counts[np.ix_(members, members)] = rng.integers(1, 20, (4, 4))
    counts[np.arange(12), np.arange(12)] += 50
    tree = learn_hierarchy(counts, 3)
    assert _partition(tree.coarse_sets) == _partition(blocks)


def test_seed_reproduces_and_names_pass_through():
    confusion, _ = _planted_confusion(12, 4, np.random.default_rng(3))
    names = [f"class_{j}" for j in range(12)]
    first = learn_hierarchy(confusion, 4, seed=5, class_names=names)
    assert first == learn_hierarchy(confusion, 4, seed=5, class_names=names)
    assert first.class_names == names


# -- overlapping coarse categories ----------------------------------------------------------

#: Blocks A = {0, 1, 2} and B = {3, 4, 5}; every row sums to 1 in exact binary fractions.
#: u_B(0) = 0.125, u_B(1) = 0, u_B(2) = 0.25, u_A(3) = 0.0625, u_A(4) = 0, u_A(5) = 0.25.
HAND_CONFUSION = np.array([
    [0.5, 0.25, 0.125, 0.125, 0.0, 0.0],
    [0.25, 0.5, 0.25, 0.0, 0.0, 0.0],
    [0.125, 0.25, 0.375, 0.25, 0.0, 0.0],
    [0.0, 0.0, 0.0625, 0.5, 0.25, 0.1875],
    [0.0, 0.0, 0.0, 0.25, 0.5, 0.25],
    [0.25, 0.0, 0.0, 0.25, 0.25, 0.25],
])


@pytest.mark.parametrize(
    "gamma,expected",
    [
        (None, [[0, 1, 2], [3, 4, 5]]),
        (1.0, [[0, 1, 2], [3, 4, 5]]),  # u_t = 0.5: nothing reaches it
        (2.0, [[0, 1, 2, 5], [2, 3, 4, 5]]),  # u_t = 0.25: u_B(2), u_A(5) on the boundary
        (4.0, [[0, 1, 2, 5], [0, 2, 3, 4, 5]]),  # u_t = 0.125: adds u_B(0)
        (8.0, [[0, 1, 2, 3, 5], [0, 2, 3, 4, 5]]),  # u_t = 0.0625: adds u_A(3)
    ],
)
def test_overlap_from_confusion_rows(gamma, expected):
    tree = learn_hierarchy(HAND_CONFUSION, 2, gamma)
    assert tree.fine_to_coarse.tolist() == [0, 0, 0, 1, 1, 1]
    assert tree.coarse_sets == expected
    assert tree.is_overlapping == (expected != [[0, 1, 2], [3, 4, 5]])


#: Two held-out images per class, probabilities chosen so that (by hand, with P^d = {A, B}
#: as above): u_B(0) = (0.2 + 0) / 2 = 0.1, u_B(1) = 0, u_B(2) = (0.5 + 0.5) / 2 = 0.5,
#: u_A(3) = 0, u_A(4) = (0.25 + 0) / 2 = 0.125, u_A(5) = (0.3 + 0.1) / 2 = 0.2.
HAND_PROBABILITIES = np.array([
    [0.6, 0.2, 0.0, 0.2, 0.0, 0.0], [0.6, 0.2, 0.2, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0, 0.0, 0.5],
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    [0.25, 0.0, 0.0, 0.0, 0.75, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    [0.3, 0.0, 0.0, 0.1, 0.1, 0.5], [0.1, 0.0, 0.0, 0.2, 0.2, 0.5],
])
HAND_LABELS = np.repeat(np.arange(6), 2)


@pytest.mark.parametrize(
    "gamma,expected",
    [
        (1.0, [[0, 1, 2], [2, 3, 4, 5]]),  # u_t = 0.5: u_B(2) on the boundary
        (3.0, [[0, 1, 2, 5], [2, 3, 4, 5]]),  # u_t = 1/6: adds u_A(5) = 0.2
        (4.0, [[0, 1, 2, 4, 5], [2, 3, 4, 5]]),  # u_t = 0.125: adds u_A(4)
        (6.0, [[0, 1, 2, 4, 5], [0, 2, 3, 4, 5]]),  # u_t = 1/12: adds u_B(0) = 0.1
    ],
)
def test_overlap_from_probabilities(gamma, expected):
    """u_k(j) comes from the images' probabilities, not from the confusion rows (which give
    different values here: u_A(4) = 0 there, 0.125 here)."""
    tree = learn_hierarchy(HAND_CONFUSION, 2, gamma, probabilities=HAND_PROBABILITIES,
                           labels=HAND_LABELS)
    assert tree.coarse_sets == expected


def test_soft_confusion_gives_the_same_overlap_as_its_probabilities():
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(12), 6)
    logits = rng.normal(size=(72, 12)) + 4.0 * np.eye(12)[labels]
    logits += 2.0 * np.eye(12)[(labels // 4) * 4 + rng.integers(0, 4, 72)]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    confusion = confusion_matrix(probabilities, labels)
    from_rows = learn_hierarchy(confusion, 3, 5.0)
    from_images = learn_hierarchy(confusion, 3, 5.0, probabilities=probabilities, labels=labels)
    assert from_rows == from_images


def test_larger_gamma_gives_supersets():
    confusion, _ = _planted_confusion(20, 4, np.random.default_rng(5), noise=0.05)
    previous = learn_hierarchy(confusion, 4)
    for gamma in (1.0, 2.0, 5.0, 10.0, 40.0):
        tree = learn_hierarchy(confusion, 4, gamma)
        assert tree.fine_to_coarse.tolist() == previous.fine_to_coarse.tolist()
        for bigger, smaller in zip(tree.coarse_sets, previous.coarse_sets):
            assert set(smaller) <= set(bigger)
        previous = tree
    assert previous.is_overlapping


# -- confusion matrix ------------------------------------------------------------------------


def _naive_confusion(probabilities, labels, num_classes, soft):
    result = np.zeros((num_classes, num_classes))
    for j in range(num_classes):
        rows = [p for p, label in zip(probabilities, labels) if label == j]
        for p in rows:
            if soft:
                result[j] += np.asarray(p) / len(rows)
            else:
                result[j, int(np.argmax(p))] += 1.0 / len(rows)
    return result


@pytest.mark.parametrize("soft", [True, False])
def test_confusion_matrix_matches_a_naive_loop(soft):
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(5), size=60)
    labels = np.concatenate([np.arange(5), rng.integers(0, 5, 55)])
    expected = _naive_confusion(probabilities, labels, 5, soft)
    result = confusion_matrix(probabilities, labels, num_classes=5, soft=soft)
    assert result.shape == (5, 5)
    np.testing.assert_allclose(result, expected, atol=1e-12)
    np.testing.assert_allclose(result.sum(axis=1), 1.0, atol=1e-12)


def test_confusion_matrix_hand_values():
    probabilities = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.0, 0.1, 0.9]]
    labels = [0, 0, 1, 2]
    soft = confusion_matrix(probabilities, labels)
    np.testing.assert_allclose(soft, [[0.4, 0.25, 0.35], [0.2, 0.5, 0.3], [0.0, 0.1, 0.9]])
    hard = confusion_matrix(probabilities, labels, soft=False)
    np.testing.assert_allclose(hard, [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


# -- coarse targets ------------------------------------------------------------------------


def test_coarse_targets_paper_with_unequal_counts():
    tree = Hierarchy([0, 0, 1, 1], [[0, 1, 2], [2, 3]])
    # by hand: S_0 holds 10 + 20 + 30 = 60 images, S_1 holds 30 + 40 = 70 -> 60/130, 70/130
    targets = tree.coarse_targets("paper", class_counts=[10, 20, 30, 40])
    np.testing.assert_allclose(targets, [60 / 130, 70 / 130])
    np.testing.assert_allclose(tree.coarse_targets(), [3 / 5, 2 / 5])  # equal counts
    np.testing.assert_allclose(tree.coarse_targets("release"), [3 / 5, 2 / 5])


def test_coarse_targets_release_on_the_authors_k9_file():
    tree = Hierarchy.load(shared_data("hdcnn", "cifar100_nin_k9.json"))
    targets = tree.coarse_targets("release")
    np.testing.assert_allclose(targets, np.array(AUTHORS_K9_SIZES) / 394)
    assert targets.sum() == pytest.approx(1.0)


# -- the authors' files --------------------------------------------------------------------


def test_authors_k9_file_loads():
    path = shared_data("hdcnn", "cifar100_nin_k9.json")
    raw = json.loads(path.read_text())
    tree = Hierarchy.load(path)
    assert tree == Hierarchy.from_authors_file(path)
    assert (tree.num_coarse, tree.num_fine) == (9, 100)
    assert [len(members) for members in tree.coarse_sets] == AUTHORS_K9_SIZES
    assert tree.is_overlapping
    for j, k in enumerate(tree.fine_to_coarse):
        assert j in tree.coarse_sets[k]
    assert dict(collections.Counter(tree.memberships().tolist())) == AUTHORS_K9_HISTOGRAM
    assert tree.class_names[0] == "apple" and len(tree.class_names) == 100
    assert tree.fine_to_coarse.tolist() == raw["disjoint"]
    assert tree.coarse_sets == [sorted(members) for members in raw["overlapping"]]


def test_authors_k5_file_loads_as_disjoint():
    path = shared_data("hdcnn", "cifar100_cnn_k5.json")
    tree = Hierarchy.load(path)
    assert (tree.num_coarse, tree.num_fine) == (5, 100)
    assert not tree.is_overlapping
    assert tree.memberships().tolist() == [1] * 100
    assert [len(members) for members in tree.coarse_sets] == [25, 11, 40, 5, 19]


def test_from_authors_file_rejects_our_format(tmp_path):
    path = tmp_path / "ours.json"
    Hierarchy.default(6).save(path)
    with pytest.raises(ValueError, match="not in the authors' hierarchy format"):
        Hierarchy.from_authors_file(path)


# -- JSON, default, plot ------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    names = ["a", "b", "c", "d", "e"]
    tree = Hierarchy([0, 0, 1, 1, 1], [[0, 1, 4], [0, 2, 3, 4]], class_names=names)
    path = tmp_path / "sub" / "tree.json"
    tree.save(path)
    assert Hierarchy.load(path) == tree
    assert Hierarchy.from_dict(tree.to_dict()) == tree
    data = json.loads(path.read_text())
    assert data["coarse_sets"] == [[0, 1, 4], [0, 2, 3, 4]]
    assert data["fine_to_coarse"] == [0, 0, 1, 1, 1] and data["class_names"] == names
    assert sorted(p.name for p in path.parent.iterdir()) == ["tree.json"]  # no temp file left
    assert tree != Hierarchy([0, 0, 1, 1, 1], class_names=names)


def test_default_hierarchy():
    tree = Hierarchy.default(100)
    assert tree.num_coarse == 9
    assert [len(members) for members in tree.coarse_sets] == [12] + [11] * 8
    assert tree.coarse_sets[0] == list(range(12)) and tree.coarse_sets[1] == list(range(12, 23))
    assert Hierarchy.default(5).coarse_sets == [[0, 1, 2], [3, 4]]
    assert Hierarchy.default(10).num_coarse == 3
    assert Hierarchy.default(2).coarse_sets == [[0], [1]]
    assert Hierarchy.default(8, 4).coarse_sets == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert repr(tree) == (
        "Hierarchy(K=9, C=100, set sizes=[12, 11, 11, 11, 11, 11, 11, 11, 11], disjoint)"
    )


def test_plot_writes_a_png(tmp_path):
    tree = Hierarchy([0, 0, 1, 1, 2, 2], [[0, 1, 2], [2, 3], [4, 5, 0]],
                     class_names=list("abcdef"))
    path = tmp_path / "tree.png"
    figure = tree.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.png"]


def test_plot_into_given_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    assert Hierarchy.default(6).plot(ax=list(axes)) is figure
    with pytest.raises(ValueError, match="pair of matplotlib Axes"):
        Hierarchy.default(6).plot(ax=axes[0])


def test_module_imports_no_deep_learning_framework():
    tree = ast.parse(MODULE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"tensorflow", "keras", "torch", "jax"}
    top_level = {
        (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
        for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert "matplotlib" not in top_level and "sklearn" not in top_level


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (([0, 0, 1, 1], [[0, 1], [2]]), r"fine categories \[3\] are not covered"),
        (([0, 0, 1, 1], [[0, 1, 4], [2, 3]]), r"coarse_sets\[0\] contains fine id 4; .*0\.\.3"),
        (([0, 0, 1, 1], [[0, 1, -1], [2, 3]]), r"coarse_sets\[0\] contains fine id -1"),
        (([0, 0, 0],), r"K = 1 coarse categories"),
        (([0, 1], [[0], [1], [0, 1]]), r"K = 3 coarse categories exceeds C = 2"),
        (([0, 0, 1, 1], [[0, 1, 2], [3]]), r"coarse set 1 does not contain .*\[2\]"),
        (([0, 0, 1, 1], [[0, 1, 2, 3], []]), r"coarse set 1 is empty"),
        (([0, 0, 2, 2],), r"coarse set 1 is empty"),
        (([0, 0, 0, 0], [[0, 1, 2, 3], [1]]), r"coarse category 1 has no disjoint member"),
        (([[0, 1], [1, 0]],), r"fine_to_coarse must be a 1-D .*shape \(2, 2\)"),
        (([0.0, 1.0],), r"fine_to_coarse must be a 1-D .*float64"),
        (([0, -1, 1],), r"fine_to_coarse\[1\] = -1"),
        (([0, 0, 1, 1], [[0, 1], [2, 3]], ["a", "b"]), r"class_names must be 4 strings"),
        (([0, 0, 1, 1], [[0, 1, 1], [2, 3]]), r"coarse_sets\[0\] lists fine id 1 more than once"),
    ],
)
def test_bad_hierarchy_raises(args, message):
    with pytest.raises(ValueError, match=message):
        Hierarchy(*args)


def test_bad_json_names_the_path_and_the_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"fine_to_coarse": [0, 0, 1,')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON: Expecting value"):
        Hierarchy.load(path)
    path.write_text('{"groups": [0, 1]}')
    with pytest.raises(ValueError, match=r"broken\.json: Not a hierarchy dict: keys \['groups'\]"):
        Hierarchy.load(path)


def test_bad_targets_raise():
    tree = Hierarchy.default(4)
    with pytest.raises(ValueError, match=r"'average'.*'paper', 'release'"):
        tree.coarse_targets("average")
    with pytest.raises(ValueError, match=r"class_counts must be 4 .*\[1, 2\]"):
        tree.coarse_targets("paper", class_counts=[1, 2])
    with pytest.raises(ValueError, match=r"class_counts must be 4 .*-1"):
        tree.coarse_targets("paper", class_counts=[1, 2, 3, -1])


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan")])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(ValueError, match=rf"gamma must be a number > 0.*got {gamma!r}"):
        learn_hierarchy(HAND_CONFUSION, 2, gamma)


def test_bad_learning_inputs_raise():
    with pytest.raises(ValueError, match=r"K = 7 coarse categories exceeds C = 6"):
        learn_hierarchy(HAND_CONFUSION, 7)
    with pytest.raises(ValueError, match=r"K = 1 coarse categories"):
        learn_hierarchy(HAND_CONFUSION, 1)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        learn_hierarchy(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match=r"pass gamma as well"):
        learn_hierarchy(HAND_CONFUSION, 2, probabilities=HAND_PROBABILITIES, labels=HAND_LABELS)
    with pytest.raises(ValueError, match=r"pass both or neither"):
        learn_hierarchy(HAND_CONFUSION, 2, 2.0, probabilities=HAND_PROBABILITIES)
    with pytest.raises(ValueError, match=r"no off-diagonal mass"):
        learn_hierarchy(np.eye(4), 2)


def test_bad_confusion_inputs_raise():
    probabilities = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"classes \[2\] have no held-out images"):
        confusion_matrix(probabilities, [0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"num_classes = 4 but probabilities has 3 columns"):
        confusion_matrix(probabilities, [0, 1, 2, 0], num_classes=4)
    with pytest.raises(ValueError, match=r"labels contain 3; allowed class ids are 0\.\.2"):
        confusion_matrix(probabilities, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"negative values .*not logits"):
        confusion_matrix(probabilities - 0.5, [0, 1, 2, 0])
