"""PASCAL VOC annotation folders (Everingham et al.): ``Annotations/<id>.xml``,
``JPEGImages/<file>`` and ``ImageSets/Main/<split>.txt`` (one image id a line), as BCCD
(``<DATA>/detection/bccd/BCCD``) and the VOCdevkit ``VOC2007``/``VOC2012`` folders have them.

Boxes are float32 ``(n, 4)`` ``(x1, y1, x2, y2)`` = the file's ``xmin, ymin, xmax, ymax``
read as given (pixels of the annotated image; no VOC-devkit "+1": areas are
``(x2 - x1) * (y2 - y1)``). What :func:`read_annotation` does with imperfect files:

- no ``<object>``: the image is kept with zero boxes (``boxes`` of shape (0, 4));
- a box beyond the image by at most ``tolerance`` pixels (default 1): clipped to
  ``[0, width] x [0, height]``; further out: :class:`VOCParseError`;
- a box with ``xmax < xmin`` or ``ymax < ymin``: :class:`VOCParseError`;
- a zero-area box (``xmax == xmin`` or ``ymax == ymin``; BCCD's BloodImage_00338 and
  BloodImage_00343 each hold one, a point): dropped by default (``degenerate="drop"``,
  counted in ``"dropped"``), or a :class:`VOCParseError` with ``degenerate="error"``;
- a missing ``<difficult>``: not difficult; missing ``<filename>``: ``<id>.jpg``;
- XML that does not parse, a missing ``<size>``/``<width>``/``<height>``, an object
  without ``<name>``/``<bndbox>``/coordinates, a non-numeric value, a class name outside
  ``class_names``: :class:`VOCParseError` naming the file and what is wrong.
"""

from __future__ import annotations

import math
import os
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

__all__ = ["VOCParseError", "read_annotation", "VOCFolder", "is_voc_folder", "BCCD_CLASSES"]

#: BCCD's classes in its own order (red cells, white cells, platelets).
BCCD_CLASSES = ("RBC", "WBC", "Platelets")
#: Split files listed first, in this order, when present.
SPLIT_ORDER = ("train", "val", "trainval", "test")
DEGENERATE_CHOICES = ("drop", "error")


class VOCParseError(ValueError):
    """A VOC annotation file that cannot be used as it is; the message names the file and
    what is wrong."""


def _text(element, tag: str, path, where: str = "") -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise VOCParseError(f"{path}: {where}missing <{tag}>.")
    return child.text.strip()


def _number(element, tag: str, path, where: str = "") -> float:
    text = _text(element, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        raise VOCParseError(f"{path}: {where}<{tag}> is {text!r}, not a number.") from None
    if not math.isfinite(value):
        raise VOCParseError(f"{path}: {where}<{tag}> is {text!r}, not a finite number.")
    return value


def read_annotation(
    path, *, class_names=None, tolerance: float = 1.0, degenerate: str = "drop"
) -> dict:
    """One VOC annotation file as ``dict(id, filename, width, height, boxes float32 (n, 4),
    names list[str], difficult bool (n,), dropped int)``; the module docstring lists how
    imperfect files are handled. ``class_names``: the allowed names (``None``: any)."""
    if degenerate not in DEGENERATE_CHOICES:
        raise ValueError(
            f"`degenerate` must be one of {', '.join(DEGENERATE_CHOICES)}, got {degenerate!r}."
        )
    path = pathlib.Path(os.fspath(path))
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise VOCParseError(f"{path}: not well-formed XML ({error}).") from None
    except OSError as error:
        raise VOCParseError(f"{path}: cannot be read ({error}).") from None
    if root.tag != "annotation":
        raise VOCParseError(f"{path}: the root element is <{root.tag}>, expected <annotation>.")
    size = root.find("size")
    if size is None:
        raise VOCParseError(f"{path}: missing <size> (the image's <width> and <height>).")
    width = _number(size, "width", path, "<size>: ")
    height = _number(size, "height", path, "<size>: ")
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise VOCParseError(
            f"{path}: image size {width:g}x{height:g} (width x height) is not two positive integers."
        )
    width, height = int(width), int(height)
    filename_element = root.find("filename")
    filename = (
        filename_element.text.strip()
        if filename_element is not None and filename_element.text and filename_element.text.strip()
        else f"{path.stem}.jpg"
    )
    allowed = None if class_names is None else list(class_names)
    boxes, names, difficult, dropped = [], [], [], 0
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k}: "
        name = _text(obj, "name", path, where)
        if allowed is not None and name not in allowed:
            raise VOCParseError(
                f"{path}: {where}class {name!r} is not one of the classes {allowed}."
            )
        box = obj.find("bndbox")
        if box is None:
            raise VOCParseError(f"{path}: {where}({name}) missing <bndbox>.")
        x1, y1, x2, y2 = (_number(box, t, path, f"{where}({name}) ") for t in ("xmin", "ymin", "xmax", "ymax"))
        coordinates = f"(xmin, ymin, xmax, ymax) = ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        if x2 < x1 or y2 < y1:
            raise VOCParseError(
                f"{path}: {where}({name}) box {coordinates} has xmax < xmin or ymax < ymin."
            )
        if min(x1, y1) < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise VOCParseError(
                f"{path}: {where}({name}) box {coordinates} lies outside the {width}x{height} "
                f"image by more than {tolerance:g} pixel(s)."
            )
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 == x1 or y2 == y1:
            if degenerate == "error":
                raise VOCParseError(f"{path}: {where}({name}) box {coordinates} has zero area.")
            dropped += 1
            continue
        flag = obj.find("difficult")
        is_difficult = False
        if flag is not None and flag.text is not None and flag.text.strip():
            try:
                is_difficult = bool(int(float(flag.text.strip())))
            except ValueError:
                raise VOCParseError(
                    f"{path}: {where}({name}) <difficult> is {flag.text.strip()!r}, not 0 or 1."
                ) from None
        boxes.append((x1, y1, x2, y2))
        names.append(name)
        difficult.append(is_difficult)
    return {
        "id": path.stem,
        "filename": filename,
        "width": width,
        "height": height,
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "names": names,
        "difficult": np.asarray(difficult, bool),
        "dropped": dropped,
    }


def is_voc_folder(path) -> bool:
    """Whether ``path`` holds ``Annotations/`` and ``JPEGImages/``."""
    path = pathlib.Path(os.fspath(path))
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


class VOCFolder:
    """A PASCAL VOC folder read with :func:`read_annotation` (annotations parsed once, on
    first use, and kept).

    Attributes:
        root: the folder.
        splits: split names from ``ImageSets/Main/<split>.txt`` (``train``, ``val``,
            ``trainval``, ``test`` first when present, then the other files without an
            underscore, sorted; the per-class ``<class>_<split>.txt`` files are skipped);
            ``("all",)`` (every annotation, sorted by id) without ``ImageSets/Main``.
        class_names: ``class_names`` if given, else the sorted union of the names in all
            annotations. Class ids are positions in it.

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` (and ``ImageSets/Main``).
        class_names: the classes (order = ids); an annotation naming another raises
            :class:`VOCParseError`.
        tolerance, degenerate: as in :func:`read_annotation`.
    """

    def __init__(self, root, class_names=None, *, tolerance: float = 1.0, degenerate: str = "drop"):
        self.root = pathlib.Path(os.fspath(root)).expanduser()
        if not is_voc_folder(self.root):
            from keras_apps.data._base import DatasetNotFoundError

            raise DatasetNotFoundError(
                f"{self.root} is not a PASCAL VOC folder: expected {self.root}/Annotations/<id>.xml, "
                f"{self.root}/JPEGImages/<image> and optionally {self.root}/ImageSets/Main/<split>.txt."
            )
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if not class_names or len(set(class_names)) != len(class_names):
                raise ValueError(f"`class_names` must be distinct names, got {class_names!r}.")
        self._given_names = class_names
        self._tolerance = tolerance
        self._degenerate = degenerate
        if degenerate not in DEGENERATE_CHOICES:
            raise ValueError(
                f"`degenerate` must be one of {', '.join(DEGENERATE_CHOICES)}, got {degenerate!r}."
            )
        self._annotations: dict[str, dict] = {}
        main = self.root / "ImageSets" / "Main"
        files = {p.stem: p for p in main.glob("*.txt") if "_" not in p.stem} if main.is_dir() else {}
        if files:
            ordered = [s for s in SPLIT_ORDER if s in files] + sorted(set(files) - set(SPLIT_ORDER))
            self._split_files = {s: files[s] for s in ordered}
        else:
            self._split_files = {}
        self._ids: dict[str, list[str]] = {}
        self._class_names = None

    @property
    def splits(self) -> tuple:
        return tuple(self._split_files) if self._split_files else ("all",)

    def ids(self, split: str) -> list[str]:
        """The image ids of ``split`` in file order (``"all"``: every annotation, sorted)."""
        if split not in self.splits:
            raise ValueError(
                f"Unknown split {split!r} for VOC folder {self.root}; allowed: {', '.join(self.splits)}."
            )
        if split not in self._ids:
            if self._split_files:
                lines = self._split_files[split].read_text().split("\n")
                self._ids[split] = [line.split()[0] for line in lines if line.strip()]
            else:
                self._ids[split] = sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
        return list(self._ids[split])

    def annotation(self, image_id: str) -> dict:
        """:func:`read_annotation` of ``Annotations/<image_id>.xml`` (class names not yet
        checked), memoised."""
        if image_id not in self._annotations:
            path = self.root / "Annotations" / f"{image_id}.xml"
            if not path.is_file():
                raise VOCParseError(f"{path}: no annotation file for image id {image_id!r}.")
            self._annotations[image_id] = read_annotation(
                path, tolerance=self._tolerance, degenerate=self._degenerate
            )
        return self._annotations[image_id]

    def _all_ids(self) -> list[str]:
        ids = []
        seen = set()
        for split in self.splits:
            for i in self.ids(split):
                if i not in seen:
                    seen.add(i)
                    ids.append(i)
        return ids

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            if self._given_names is not None:
                self._class_names = list(self._given_names)
            else:
                names = set()
                for i in self._all_ids():
                    names.update(self.annotation(i)["names"])
                if not names:
                    raise VOCParseError(f"{self.root}: no annotation names any object class.")
                self._class_names = sorted(names)
        return list(self._class_names)

    def record(self, image_id: str) -> dict:
        """``dict(id, image_path, boxes float32 (n, 4), classes int32 (n,), difficult bool
        (n,), width, height)``; a class name outside :attr:`class_names` raises
        :class:`VOCParseError` naming the file."""
        note = self.annotation(image_id)
        names = self.class_names
        index = {n: k for k, n in enumerate(names)}
        unknown = sorted(set(note["names"]) - set(index))
        if unknown:
            raise VOCParseError(
                f"{self.root / 'Annotations' / (image_id + '.xml')}: class(es) {unknown} are not "
                f"among the classes {names}."
            )
        image_path = self.root / "JPEGImages" / note["filename"]
        if not image_path.is_file():
            stem_matches = sorted((self.root / "JPEGImages").glob(f"{image_id}.*"))
            if not stem_matches:
                raise VOCParseError(
                    f"{self.root / 'Annotations' / (image_id + '.xml')}: image {image_path} does not exist."
                )
            image_path = stem_matches[0]
        return {
            "id": image_id,
            "image_path": str(image_path),
            "boxes": note["boxes"].copy(),
            "classes": np.asarray([index[n] for n in note["names"]], np.int32),
            "difficult": note["difficult"].copy(),
            "width": note["width"],
            "height": note["height"],
        }

    def records(self, split: str) -> list[dict]:
        """:meth:`record` of every id of ``split``, in file order."""
        return [self.record(i) for i in self.ids(split)]

    def image(self, record) -> np.ndarray:
        """The decoded RGB uint8 ``(height, width, 3)`` image of a record (or an id); a
        ValueError when its size differs from the annotation's."""
        if isinstance(record, str):
            record = self.record(record)
        from PIL import Image

        with Image.open(record["image_path"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        if pixels.shape[:2] != (record["height"], record["width"]):
            raise ValueError(
                f"{record['image_path']} is {pixels.shape[1]}x{pixels.shape[0]} but its annotation "
                f"says {record['width']}x{record['height']} (width x height)."
            )
        return pixels

    def __repr__(self) -> str:
        return f"VOCFolder({str(self.root)!r}, splits={self.splits})"
