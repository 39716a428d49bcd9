"""The HD-CNN category hierarchy: K coarse categories over C fine categories.

Spec, "Learning the category hierarchy" (Yan et al. 2015, section 3.3):

1. the building block's confusion matrix F on a held-out set (:func:`confusion_matrix`,
   rows normalised);
2. distance D = 1 - F, symmetrised D <- (D + D^T) / 2, diag(D) = 0;
3. spectral clustering of the fine categories into K clusters -> the disjoint mapping P^d;
4. overlapping coarse categories: u_k(j) = (1/|S^f_j|) sum_{i in S^f_j} B^d_ik, with
   B^d_ik = sum_{j': P^d(j') = k} p_ij'; fine category j joins S^c_k when
   u_k(j) >= u_t = 1 / (gamma K) (:func:`learn_hierarchy`).

:class:`Hierarchy` holds the result (P^d and the sets S^c_k), the coarse targets t_k of the
consistency term (:meth:`Hierarchy.coarse_targets`), JSON save/load (ours and the authors'
release format, ``../shared/data/hdcnn/cifar100_nin_k9.json``) and a plot.

Only numpy and scikit-learn are imported here; matplotlib is imported inside
:meth:`Hierarchy.plot` and draws on an Agg canvas (no display needed, pyplot's global
backend is left alone).

    >>> from keras_apps.hdcnn.hierarchy import Hierarchy, confusion_matrix, learn_hierarchy
    >>> F = confusion_matrix(held_out_probabilities, held_out_labels)
    >>> tree = learn_hierarchy(F, 9, gamma=5.0, probabilities=held_out_probabilities,
    ...                        labels=held_out_labels)
    >>> tree.save("hierarchy.json"); tree.plot("hierarchy.png")
    >>> Hierarchy.load("../shared/data/hdcnn/cifar100_nin_k9.json")   # the authors' K=9
    Hierarchy(K=9, C=100, set sizes=[25, 51, 80, 80, 36, 25, 27, 27, 43], overlapping)
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib
import warnings

import numpy as np

from keras_apps._atomic import atomic_file

__all__ = ["Hierarchy", "confusion_matrix", "learn_hierarchy"]

#: ``format`` value of the JSON files written by :meth:`Hierarchy.save`.
FORMAT = "keras_apps.hdcnn.Hierarchy"
FORMAT_VERSION = 1

#: The ``coarse_targets`` conventions (see :meth:`Hierarchy.coarse_targets`).
TARGET_CONVENTIONS = ("paper", "release")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _int_vector(value, name: str) -> np.ndarray:
    """``value`` as a 1-D int64 array, or a ValueError naming ``name``."""
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a 1-D sequence of integers, got shape {array.shape} and dtype "
            f"{array.dtype}: {_short(value)}."
        )
    return array.astype(np.int64)


def _short(value, limit: int = 120) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_num_coarse(num_coarse: int, num_fine: int) -> None:
    if num_coarse < 2:
        raise ValueError(
            f"K = {num_coarse} coarse categories; HD-CNN needs at least 2 (allowed: 2..C = "
            f"2..{num_fine})."
        )
    if num_coarse > num_fine:
        raise ValueError(
            f"K = {num_coarse} coarse categories exceeds C = {num_fine} fine categories "
            f"(allowed: 2..{num_fine})."
        )


class Hierarchy:
    """K coarse categories over C fine categories.

    Attributes:
        fine_to_coarse: int64 array (C,), the disjoint mapping P^d (values 0..K-1), read-only.
        coarse_sets: K sorted lists of fine ids, the (possibly overlapping) sets S^c_k; each
            contains every j with ``fine_to_coarse[j] == k``. Without overlap they are the
            disjoint groups of P^d.
        class_names: C fine category names, or None.

    Args:
        fine_to_coarse: P^d, a length-C sequence of coarse ids. Every coarse category needs at
            least one disjoint member (the fine-to-coarse aggregation B_ik sums over them).
        coarse_sets: K sequences of fine ids, or None for the disjoint groups of P^d
            (K = max(fine_to_coarse) + 1).
        class_names: C names, or None.
    """

    def __init__(self, fine_to_coarse, coarse_sets=None, class_names=None):
        mapping = _int_vector(fine_to_coarse, "fine_to_coarse")
        num_fine = len(mapping)
        if num_fine < 2:
            raise ValueError(
                f"fine_to_coarse has {num_fine} fine categories; a hierarchy needs at least 2."
            )
        if mapping.min() < 0:
            j = int(np.flatnonzero(mapping < 0)[0])
            raise ValueError(
                f"fine_to_coarse[{j}] = {int(mapping[j])}; coarse ids must be non-negative."
            )
        if coarse_sets is None:
            num_coarse = int(mapping.max()) + 1
            _check_num_coarse(num_coarse, num_fine)
            sets = [np.flatnonzero(mapping == k).tolist() for k in range(num_coarse)]
        else:
            if isinstance(coarse_sets, (str, bytes)) or not hasattr(coarse_sets, "__len__"):
                raise ValueError(
                    f"coarse_sets must be a list of K lists of fine ids, got {_short(coarse_sets)}."
                )
            num_coarse = len(coarse_sets)
            _check_num_coarse(num_coarse, num_fine)
            if mapping.max() >= num_coarse:
                j = int(np.argmax(mapping))
                raise ValueError(
                    f"fine_to_coarse[{j}] = {int(mapping[j])} but there are only K = "
                    f"{num_coarse} coarse sets (allowed coarse ids: 0..{num_coarse - 1})."
                )
            sets = [self._check_set(k, members, num_fine) for k, members in enumerate(coarse_sets)]
        for k, members in enumerate(sets):
            if not members:
                raise ValueError(f"coarse set {k} is empty; every coarse category needs members.")
        covered = np.zeros(num_fine, dtype=bool)
        for members in sets:
            covered[members] = True
        if not covered.all():
            missing = np.flatnonzero(~covered).tolist()
            raise ValueError(
                f"fine categories {missing} are not covered by any coarse set; every fine id "
                f"0..{num_fine - 1} must belong to at least one."
            )
        for k, members in enumerate(sets):
            disjoint = np.flatnonzero(mapping == k).tolist()
            if not disjoint:
                raise ValueError(
                    f"coarse category {k} has no disjoint member (no j with fine_to_coarse[j] == "
                    f"{k}); P^d must assign at least one fine category to every coarse category."
                )
            absent = sorted(set(disjoint) - set(members))
            if absent:
                raise ValueError(
                    f"coarse set {k} does not contain its disjoint members {absent} "
                    f"(fine_to_coarse[j] == {k}); S^c_k must include every fine j with P^d(j) = k."
                )
        if class_names is not None:
            if isinstance(class_names, str) or not hasattr(class_names, "__len__"):
                raise ValueError(
                    f"class_names must be a list of {num_fine} strings, got {_short(class_names)}."
                )
            class_names = list(class_names)
            if len(class_names) != num_fine or not all(isinstance(n, str) for n in class_names):
                raise ValueError(
                    f"class_names must be {num_fine} strings (one per fine category), got "
                    f"{len(class_names)} entries: {_short(class_names)}."
                )
        mapping.setflags(write=False)
        self._fine_to_coarse = mapping
        self._coarse_sets = tuple(tuple(members) for members in sets)
        self._class_names = None if class_names is None else tuple(class_names)

    @staticmethod
    def _check_set(k: int, members, num_fine: int) -> list[int]:
        if isinstance(members, (str, bytes)) or not hasattr(members, "__len__"):
            raise ValueError(f"coarse_sets[{k}] must be a list of fine ids, got {_short(members)}.")
        if len(members) == 0:
            raise ValueError(f"coarse set {k} is empty; every coarse category needs members.")
        ids = _int_vector(members, f"coarse_sets[{k}]")
        bad = ids[(ids < 0) | (ids >= num_fine)]
        if bad.size:
            raise ValueError(
                f"coarse_sets[{k}] contains fine id {int(bad[0])}; fine ids must lie in "
                f"0..{num_fine - 1}."
            )
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"coarse_sets[{k}] lists fine id {int(unique[counts > 1][0])} more than once."
            )
        return unique.tolist()

    # -- structure -----------------------------------------------------------------------

    @property
    def fine_to_coarse(self) -> np.ndarray:
        """P^d: int64 (C,), read-only."""
        return self._fine_to_coarse

    @property
    def coarse_sets(self) -> list[list[int]]:
        """S^c_k: K sorted lists of fine ids (a fresh copy)."""
        return [list(members) for members in self._coarse_sets]

    @property
    def disjoint_sets(self) -> list[list[int]]:
        """The groups of P^d: K sorted lists {j : P^d(j) = k}."""
        return [np.flatnonzero(self._fine_to_coarse == k).tolist() for k in range(self.num_coarse)]

    @property
    def class_names(self) -> list[str] | None:
        return None if self._class_names is None else list(self._class_names)

    @property
    def num_fine(self) -> int:
        """C."""
        return len(self._fine_to_coarse)

    @property
    def num_coarse(self) -> int:
        """K."""
        return len(self._coarse_sets)

    @property
    def set_sizes(self) -> list[int]:
        """|S^c_k| for k = 0..K-1."""
        return [len(members) for members in self._coarse_sets]

    @property
    def is_overlapping(self) -> bool:
        """True when some S^c_k holds more than its disjoint group."""
        disjoint = np.bincount(self._fine_to_coarse, minlength=self.num_coarse)
        return bool(np.any(np.asarray(self.set_sizes) > disjoint))

    def membership_matrix(self) -> np.ndarray:
        """Bool (K, C): entry (k, j) is True when fine j belongs to S^c_k."""
        matrix = np.zeros((self.num_coarse, self.num_fine), dtype=bool)
        for k, members in enumerate(self._coarse_sets):
            matrix[k, list(members)] = True
        return matrix

    def memberships(self) -> np.ndarray:
        """Int64 (C,): how many coarse sets each fine category belongs to."""
        return self.membership_matrix().sum(axis=0).astype(np.int64)

    # -- coarse targets ------------------------------------------------------------------

    def coarse_targets(self, convention: str = "paper", class_counts=None) -> np.ndarray:
        """t_k of the coarse category consistency term, float64 (K,), summing to 1.

        ``"paper"``: the fraction of training images in coarse category k, overlap aware and
        normalised over k: t_k = sum_{j in S^c_k} n_j / sum_k' sum_{j in S^c_k'} n_j, with
        n_j = ``class_counts[j]`` (equal counts when None).

        ``"release"`` (the authors' code): t_k = |S^c_k| / sum_k' |S^c_k'| (394 memberships for
        their K=9 CIFAR-100 file). It is the paper's formula with equal counts, so
        ``class_counts`` does not enter it.
        """
        if convention not in TARGET_CONVENTIONS:
            raise ValueError(
                f"Unknown coarse_targets convention {convention!r}; choose one of "
                f"{', '.join(map(repr, TARGET_CONVENTIONS))}."
            )
        if convention == "release" or class_counts is None:
            counts = np.ones(self.num_fine, dtype=np.float64)
        else:
            counts = np.asarray(class_counts, dtype=np.float64)
            valid = counts.shape == (self.num_fine,) and np.isfinite(counts).all()
            if not valid or (counts < 0).any():
                raise ValueError(
                    f"class_counts must be {self.num_fine} finite non-negative numbers (training "
                    f"images per fine category), got {_short(class_counts)}."
                )
        mass = self.membership_matrix().astype(np.float64) @ counts
        total = mass.sum()
        if total <= 0:
            raise ValueError(
                f"class_counts {_short(class_counts)} put no image in any coarse category."
            )
        return mass / total

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict (``from_dict`` reads it back)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "num_fine": self.num_fine,
            "num_coarse": self.num_coarse,
            "fine_to_coarse": self._fine_to_coarse.tolist(),
            "coarse_sets": self.coarse_sets,
            "class_names": self.class_names,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Hierarchy":
        """From :meth:`to_dict`'s dict, or from the authors' dict (keys ``num_fine``,
        ``num_coarse``, ``disjoint``, optional ``overlapping`` and ``fine_names``)."""
        if not isinstance(d, dict):
            raise ValueError(f"A hierarchy dict is expected, got {type(d).__name__}: {_short(d)}.")
        if "fine_to_coarse" in d:
            return cls._from_own_dict(d)
        if "disjoint" in d:
            return cls._from_authors_dict(d)
        raise ValueError(
            f"Not a hierarchy dict: keys {sorted(d)}; expected ours ('fine_to_coarse', "
            "'coarse_sets', 'class_names') or the authors' ('num_fine', 'num_coarse', "
            "'disjoint', 'overlapping', 'fine_names')."
        )

    @classmethod
    def _from_own_dict(cls, d: dict) -> "Hierarchy":
        if d.get("format", FORMAT) != FORMAT or d.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ValueError(
                f"Hierarchy format {d.get('format')!r} version {d.get('version')!r} is not "
                f"supported (this code reads {FORMAT!r} version {FORMAT_VERSION})."
            )
        tree = cls(d["fine_to_coarse"], d.get("coarse_sets"), d.get("class_names"))
        _check_declared(tree, d, "num_fine", "num_coarse")
        return tree

    @classmethod
    def _from_authors_dict(cls, d: dict) -> "Hierarchy":
        missing = [key for key in ("num_fine", "num_coarse", "disjoint") if key not in d]
        if missing:
            raise ValueError(
                f"The authors' hierarchy format needs keys {missing}; found {sorted(d)}."
            )
        num_coarse = d["num_coarse"]
        if not _is_int(num_coarse):
            raise ValueError(f"num_coarse must be an integer, got {num_coarse!r}.")
        overlapping = d.get("overlapping")
        if overlapping is None:
            mapping = _int_vector(d["disjoint"], "disjoint")
            overlapping = [np.flatnonzero(mapping == k).tolist() for k in range(num_coarse)]
        tree = cls(d["disjoint"], overlapping, d.get("fine_names"))
        _check_declared(tree, d, "num_fine", "num_coarse")
        return tree

    def save(self, path) -> None:
        """Writes :meth:`to_dict` as JSON to ``path`` (atomically: temporary sibling + rename)."""
        items = self.to_dict().items()
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in items]
        with atomic_file(path, suffix=".json") as tmp:
            tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")

    @classmethod
    def load(cls, path) -> "Hierarchy":
        """Reads a JSON file written by :meth:`save` or in the authors' format (detected by its
        keys), e.g. ``Hierarchy.load("../shared/data/hdcnn/cifar100_nin_k9.json")``."""
        data = _read_json(path)
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def from_authors_file(cls, path) -> "Hierarchy":
        """Reads the authors' release hierarchy (``../shared/data/hdcnn/cifar100_nin_k9.json``,
        ``cifar100_cnn_k5.json``): ``disjoint`` is P^d, ``overlapping`` (absent or null: no
        overlap) the sets S^c_k, ``fine_names`` the class names. The authors list each set in
        their branch's output order; here the sets are sorted."""
        data = _read_json(path)
        if not isinstance(data, dict) or "disjoint" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"{path} is not in the authors' hierarchy format (keys 'num_fine', 'num_coarse', "
                f"'disjoint', 'overlapping', 'fine_names'); found {keys}."
            )
        try:
            return cls._from_authors_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def default(cls, num_fine: int, num_coarse: int | None = None, class_names=None) -> "Hierarchy":
        """Contiguous balanced disjoint groups (``np.array_split`` of range(C)) for a model built
        without a learned hierarchy. K defaults to min(9, max(2, round(sqrt(C)))): C=100 -> 9
        (the paper's best K on CIFAR-100), C=10 -> 3, C=5 -> 2."""
        if not _is_int(num_fine) or num_fine < 2:
            raise ValueError(f"num_fine must be an integer >= 2, got {num_fine!r}.")
        if num_coarse is None:
            num_coarse = min(9, max(2, round(math.sqrt(num_fine))))
        elif not _is_int(num_coarse):
            raise ValueError(f"num_coarse must be an integer in 2..{num_fine}, got {num_coarse!r}.")
        _check_num_coarse(int(num_coarse), int(num_fine))
        mapping = np.empty(int(num_fine), dtype=np.int64)
        for k, members in enumerate(np.array_split(np.arange(num_fine), int(num_coarse))):
            mapping[members] = k
        return cls(mapping, class_names=class_names)

    # -- plot ----------------------------------------------------------------------------

    def plot(self, path=None, ax=None):
        """Two panels: (1) the K x C membership matrix (dark: disjoint member of P^d, light:
        added by the overlap), (2) the histogram of how many coarse categories each fine
        category belongs to. Returns the matplotlib Figure; writes a PNG to ``path`` when
        given (atomically). ``ax``: two Axes of one figure to draw into, or None for a new
        figure on an Agg canvas."""
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        if ax is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            width = min(20.0, max(11.0, 0.12 * self.num_fine + 4.0))
            figure = Figure(figsize=(width, 4.0 + 0.15 * self.num_coarse), layout="constrained")
            FigureCanvasAgg(figure)
            grid = figure.add_gridspec(1, 2, width_ratios=(2.5, 1))
            matrix_ax, hist_ax = figure.add_subplot(grid[0]), figure.add_subplot(grid[1])
        else:
            from matplotlib.axes import Axes

            axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
            if len(axes) != 2 or not all(isinstance(a, Axes) for a in axes):
                raise ValueError(
                    f"ax must be a pair of matplotlib Axes (membership matrix, histogram), got "
                    f"{_short(ax)}."
                )
            matrix_ax, hist_ax = axes
            figure = matrix_ax.get_figure()

        image = self.membership_matrix().astype(np.int64)
        image[self._fine_to_coarse, np.arange(self.num_fine)] = 2
        colours = ListedColormap(["#ffffff", "#9ecae1", "#08519c"])
        matrix_ax.imshow(
            image, cmap=colours, vmin=0, vmax=2, aspect="auto", interpolation="nearest"
        )
        matrix_ax.set_yticks(range(self.num_coarse))
        if self._class_names is not None and self.num_fine <= 60:
            matrix_ax.set_xticks(range(self.num_fine))
            matrix_ax.set_xticklabels(self._class_names, rotation=90, fontsize=7)
        matrix_ax.set_xlabel("fine category")
        matrix_ax.set_ylabel("coarse category k")
        matrix_ax.set_title(f"S^c_k membership (K={self.num_coarse}, C={self.num_fine})", loc="left")
        handles = [Patch(facecolor="#08519c", label="disjoint, P^d(j) = k")]
        if self.is_overlapping:
            handles.append(
                Patch(facecolor="#9ecae1", label="overlap, u_k(j) >= 1/(gamma K)")
            )
        matrix_ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                         ncol=len(handles), fontsize=8, frameon=False, borderaxespad=0.2)

        memberships = self.memberships()
        levels = np.arange(1, int(memberships.max()) + 1)
        counts = np.bincount(memberships, minlength=levels[-1] + 1)[1:]
        bars = hist_ax.bar(levels, counts, color="#3182bd")
        hist_ax.bar_label(bars, fontsize=8)
        hist_ax.set_xticks(levels)
        hist_ax.set_xlabel("coarse sets per fine category")
        hist_ax.set_ylabel("fine categories")
        hist_ax.set_title("Fine category occurrences", loc="left")
        if path is not None:
            with atomic_file(path, suffix=".png") as tmp:
                figure.savefig(tmp, format="png", dpi=110)
        return figure

    # -- comparison ----------------------------------------------------------------------

    def __eq__(self, other):
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return (
            np.array_equal(self._fine_to_coarse, other._fine_to_coarse)
            and self._coarse_sets == other._coarse_sets
            and self._class_names == other._class_names
        )

    __hash__ = None

    def __repr__(self) -> str:
        kind = "overlapping" if self.is_overlapping else "disjoint"
        return (
            f"Hierarchy(K={self.num_coarse}, C={self.num_fine}, set sizes={self.set_sizes}, "
            f"{kind})"
        )


def _check_declared(tree: Hierarchy, d: dict, *keys: str) -> None:
    for key in keys:
        if key in d and d[key] != getattr(tree, key):
            raise ValueError(
                f"{key} = {d[key]!r} disagrees with the hierarchy it describes ({key} = "
                f"{getattr(tree, key)})."
            )


def _read_json(path):
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a UTF-8 JSON file: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


# -- learning the hierarchy --------------------------------------------------------------


def _check_probabilities(probabilities, labels, num_classes=None, *, soft: bool):
    """Validated (N, C) float64 scores and (N,) int64 labels."""
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] < 2:
        raise ValueError(
            f"probabilities must have shape (N, C) with N >= 1 and C >= 2, got {scores.shape}."
        )
    num = scores.shape[1]
    if num_classes is not None and (not _is_int(num_classes) or num_classes != num):
        raise ValueError(
            f"num_classes = {num_classes!r} but probabilities has {num} columns (one per class)."
        )
    if not np.isfinite(scores).all():
        raise ValueError("probabilities contain NaN or infinite values.")
    if soft:
        if (scores < 0).any():
            raise ValueError(
                f"probabilities contain negative values (min {scores.min():.4g}); pass softmax "
                "outputs, not logits."
            )
        sums = scores.sum(axis=1)
        if (sums <= 0).any():
            raise ValueError(f"probabilities row {int(np.argmin(sums))} sums to 0.")
        scores = scores / sums[:, None]
    ids = _int_vector(labels, "labels")
    if len(ids) != len(scores):
        raise ValueError(f"labels has {len(ids)} entries but probabilities has {len(scores)} rows.")
    bad = ids[(ids < 0) | (ids >= num)]
    if bad.size:
        raise ValueError(f"labels contain {int(bad[0])}; allowed class ids are 0..{num - 1}.")
    return scores, ids


def _class_means(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Row j: the mean of ``values[i]`` over the images i of class j (every class present)."""
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(
            f"classes {np.flatnonzero(counts == 0).tolist()} have no held-out images; every class "
            "needs at least one (sample the held-out set with a balanced class distribution)."
        )
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(values[order], starts, axis=0) / counts[:, None]


def confusion_matrix(probabilities, labels, num_classes=None, soft: bool = True) -> np.ndarray:
    """The (C, C) row-normalised confusion matrix F of the building block on a held-out set.

    ``soft=True``: F[j, j'] = mean over the held-out images of class j of p_j' (each image's
    probabilities normalised to sum 1). ``soft=False``: the fraction of them predicted j'
    (argmax, ties to the lower id). ``probabilities``: (N, C) softmax outputs; ``labels``:
    (N,) class ids; ``num_classes``: C, checked against the columns when given.
    """
    scores, ids = _check_probabilities(probabilities, labels, num_classes, soft=soft)
    num = scores.shape[1]
    if not soft:
        scores = np.eye(num)[np.argmax(scores, axis=1)]
    return _class_means(scores, ids, num)


def _disjoint_mapping(confusion: np.ndarray, n_coarse: int, seed: int) -> np.ndarray:
    """P^d by spectral clustering of the symmetrised confusion distances.

    D = 1 - F, D <- (D + D^T) / 2, diag(D) = 0 (spec); affinity A = 1 - D off the diagonal,
    i.e. the symmetrised confusion (F + F^T) / 2, with no self-loops. A is parameter-free and
    keeps the contrast of F: the distances of a trained network are all close to 1, so a
    Gaussian kernel exp(-D^2 / 2 sigma^2) with sigma the median distance is close to a linear
    function of D anyway. A graph that is not connected (a hard confusion with classes never
    confused across groups) is well separated already; scikit-learn's warning about it is
    silenced. Clusters are numbered by their smallest fine id.
    """
    from sklearn.cluster import SpectralClustering

    distance = 1.0 - confusion
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    affinity = 1.0 - distance
    np.fill_diagonal(affinity, 0.0)
    if not affinity.any():
        raise ValueError(
            "The confusion matrix has no off-diagonal mass (no fine category is ever confused "
            "with another), so it carries no hierarchy to cluster; use the soft confusion "
            "(confusion_matrix(..., soft=True)) or a larger held-out set."
        )
    clustering = SpectralClustering(n_clusters=n_coarse, affinity="precomputed", random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        raw = clustering.fit_predict(affinity)
    found = np.unique(raw)
    if len(found) != n_coarse:
        raise ValueError(
            f"Spectral clustering found only {len(found)} non-empty clusters for K = {n_coarse}; "
            "choose a smaller K."
        )
    first_member = [int(np.flatnonzero(raw == label)[0]) for label in found]
    renumber = {int(found[i]): k for k, i in enumerate(np.argsort(first_member))}
    return np.array([renumber[int(label)] for label in raw], dtype=np.int64)


def learn_hierarchy(confusion, n_coarse: int, gamma=None, *, probabilities=None, labels=None,
                    seed: int = 0, class_names=None) -> Hierarchy:
    """Learns the category hierarchy from a held-out confusion matrix (spec section
    "Learning the category hierarchy").

    P^d: spectral clustering (``sklearn.cluster.SpectralClustering``, ``affinity=
    "precomputed"``, ``random_state=seed``) of D = 1 - F (rows of F normalised first,
    symmetrised, zero diagonal) with the affinity A = 1 - D off the diagonal, i.e. the
    symmetrised confusion (F + F^T) / 2: parameter-free, and as good as a Gaussian kernel of
    D here because the distances of a trained network all lie close to 1. Coarse categories
    are numbered by their smallest fine id, so a given ``seed`` reproduces the result.

    With ``gamma``: u_k(j) = (1/|S^f_j|) sum_{i in S^f_j} B^d_ik, B^d_ik = sum_{j': P^d(j')=k}
    p_ij', from ``probabilities`` (N, C) and ``labels`` (N,) when given, else from the rows of
    ``confusion`` (u_k(j) = sum_{j' in cluster k} F[j, j'], the same value when F is the soft
    confusion of those probabilities). Fine j joins S^c_k when u_k(j) >= 1/(gamma K); the
    disjoint members always stay. Without ``gamma`` the sets are the disjoint groups.
    """
    F = np.asarray(confusion, dtype=np.float64)
    if F.ndim != 2 or F.shape[0] != F.shape[1] or F.shape[0] < 2:
        raise ValueError(
            f"confusion must be a square (C, C) matrix with C >= 2, got shape {F.shape}."
        )
    if not np.isfinite(F).all() or (F < 0).any():
        raise ValueError("confusion must hold finite non-negative values (rates or counts).")
    row_sums = F.sum(axis=1)
    if (row_sums <= 0).any():
        raise ValueError(
            f"confusion rows {np.flatnonzero(row_sums <= 0).tolist()} sum to 0; every fine "
            "category needs held-out images."
        )
    F = F / row_sums[:, None]
    num_fine = F.shape[0]
    if not _is_int(n_coarse):
        raise ValueError(f"n_coarse must be an integer in 2..{num_fine}, got {n_coarse!r}.")
    _check_num_coarse(int(n_coarse), num_fine)
    n_coarse = int(n_coarse)
    if gamma is not None and (not _is_real(gamma) or not gamma > 0):
        raise ValueError(f"gamma must be a number > 0 (u_t = 1/(gamma K)), got {gamma!r}.")
    if (probabilities is None) != (labels is None):
        raise ValueError("probabilities and labels go together: pass both or neither.")
    if probabilities is not None and gamma is None:
        raise ValueError(
            "probabilities and labels only enter the overlapping coarse categories; pass gamma "
            "as well, or leave them out for a disjoint hierarchy."
        )
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}.")

    mapping = _disjoint_mapping(F, n_coarse, int(seed))
    if gamma is None:
        return Hierarchy(mapping, class_names=class_names)
    aggregation = np.zeros((num_fine, n_coarse))
    aggregation[np.arange(num_fine), mapping] = 1.0
    if probabilities is not None:
        scores, ids = _check_probabilities(probabilities, labels, num_fine, soft=True)
        likelihood = _class_means(scores @ aggregation, ids, num_fine)
    else:
        likelihood = F @ aggregation
    threshold = 1.0 / (gamma * n_coarse)
    members = (likelihood >= threshold) | (aggregation > 0)
    sets = [np.flatnonzero(members[:, k]).tolist() for k in range(n_coarse)]
    return Hierarchy(mapping, sets, class_names=class_names)
