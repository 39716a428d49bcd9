"""Class-attribute matrices: :class:`ClassAttributes` and the project's CIFAR-10 matrix.

CIFAR-10 has no attribute annotations, so :func:`cifar10_attributes` is written here, class
level as AwA2's predicate matrix is: 1 = true of (nearly) every image of the class, 0.5 =
true of many of its images or of a part of the class, 0 = not true. The attributes are
visual and chosen so that related classes share them (cat ~ dog, automobile ~ truck,
deer ~ horse, airplane ~ bird ~ ship): zero-shot transfer needs an unseen class to be
described by attributes that seen classes also show. :data:`CIFAR10_ATTRIBUTE_DOCS` gives,
per attribute, its definition and every non-zero value with its reason; a test checks that
the table and the matrix agree, that no two classes have the same row and that no attribute
is constant.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CIFAR10_ATTRIBUTES", "CIFAR10_ATTRIBUTE_DOCS", "CIFAR10_ATTRIBUTE_MATRIX", "CIFAR10_CLASSES",
           "ClassAttributes", "cifar10_attributes"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: attribute -> (definition, {class: (value, reason)}); classes not listed have 0.
CIFAR10_ATTRIBUTE_DOCS = {
    "has_wheels": ("round wheels are visible", {
        "automobile": (1, "always on four visible wheels"), "truck": (1, "always on visible wheels"),
        "airplane": (0.5, "landing gear shows on parked and landing planes, not in flight")}),
    "has_wings": ("a pair of wings", {"airplane": (1, "fixed wings"), "bird": (1, "feathered wings")}),
    "has_fur": ("body covered in hair or fur", {
        "cat": (1, ""), "deer": (1, ""), "dog": (1, ""), "horse": (1, "a short coat")}),
    "has_feathers": ("body covered in feathers", {"bird": (1, "")}),
    "four_legged": ("stands on four legs", {
        "cat": (1, ""), "deer": (1, ""), "dog": (1, ""), "horse": (1, ""),
        "frog": (1, "four limbs, folded when sitting")}),
    "two_legged": ("stands on two legs", {"bird": (1, "")}),
    "has_tail": ("a tail is visible", {
        "cat": (1, "a long tail"), "dog": (1, ""), "horse": (1, "a long hair tail"),
        "deer": (0.5, "a short tail, often hidden"), "bird": (0.5, "tail feathers, small in many pictures")}),
    "has_hooves": ("legs end in hooves", {"deer": (1, ""), "horse": (1, "")}),
    "has_antlers": ("antlers on the head", {"deer": (0.5, "only the males, part of the year")}),
    "has_paws": ("legs end in paws or talons with claws", {
        "cat": (1, ""), "dog": (1, ""), "bird": (0.5, "talons; the CIFAR birds include many with small feet")}),
    "pointed_ears": ("upright ears stand out from the head", {
        "cat": (1, ""), "deer": (1, "large ears"), "horse": (1, ""),
        "dog": (0.5, "upright in many breeds, floppy in others")}),
    "has_snout": ("an elongated muzzle", {
        "dog": (1, ""), "horse": (1, ""), "deer": (1, ""), "cat": (0.5, "a short muzzle")}),
    "long_legs": ("legs long relative to the body", {
        "deer": (1, ""), "horse": (1, ""), "dog": (0.5, "breed dependent"),
        "bird": (0.5, "ostriches, emus and herons are frequent CIFAR-10 birds")}),
    "long_neck": ("a neck long relative to the body", {
        "horse": (1, ""), "deer": (0.5, "moderately long"), "bird": (0.5, "ostriches, emus, herons")}),
    "has_beak": ("a beak", {"bird": (1, "")}),
    "smooth_moist_skin": ("bare, smooth skin", {"frog": (1, "")}),
    "metallic_body": ("a painted metal body", {
        "airplane": (1, ""), "automobile": (1, ""), "ship": (1, "steel hull"), "truck": (1, "")}),
    "has_windows": ("glass windows or portholes", {
        "airplane": (1, "cockpit and cabin windows"), "automobile": (1, ""), "truck": (1, "the cab"),
        "ship": (0.5, "bridge windows and portholes, small at CIFAR scale")}),
    "on_road": ("seen on a road or street", {"automobile": (1, ""), "truck": (1, "")}),
    "on_water": ("seen on or in water", {"ship": (1, ""), "frog": (0.5, "ponds and wet leaves"),
                                          "bird": (0.5, "water birds are a large part of the class")}),
    "in_sky": ("seen against the sky", {"airplane": (1, "mostly in flight"),
                                        "bird": (0.5, "in flight or perched against the sky")}),
    "natural_background": ("grass, forest, soil or foliage behind the object", {
        "deer": (1, ""), "horse": (1, "fields"), "frog": (1, ""), "bird": (1, "trees, grass, water"),
        "dog": (0.5, "gardens and indoors"), "cat": (0.5, "indoors as often as outdoors")}),
    "larger_than_person": ("the object is bigger than a person", {
        "airplane": (1, ""), "ship": (1, ""), "truck": (1, ""), "horse": (1, ""),
        "automobile": (0.5, "longer but lower than a person"), "deer": (0.5, "about a person's size")}),
    "fits_in_hands": ("small enough to hold in two hands", {
        "frog": (1, ""), "bird": (0.5, "most species, not ostriches"), "cat": (0.5, "kittens and small cats")}),
    "domestic_pet": ("kept as a pet in homes", {"cat": (1, ""), "dog": (1, "")}),
    "carries_people": ("people ride in or on it", {
        "airplane": (1, ""), "automobile": (1, ""), "ship": (1, ""), "truck": (1, "its driver"),
        "horse": (1, "riders, carriages")}),
    "carries_cargo": ("built to carry goods", {
        "truck": (1, "the cargo box or trailer"), "ship": (0.5, "cargo ships, containers"),
        "airplane": (0.5, "cargo holds, not visible")}),
    "streamlined": ("a tapered, aerodynamic body", {
        "airplane": (1, ""), "bird": (0.5, "in flight"), "ship": (0.5, "the bow"),
        "automobile": (0.5, "sports cars, not boxes")}),
    "spotted_or_striped": ("a spotted, striped or mottled surface pattern", {
        "frog": (0.5, "many species"), "cat": (0.5, "tabbies"), "deer": (0.5, "fawns' spots"),
        "dog": (0.5, "dalmatians, patched coats"), "bird": (0.5, "speckled and barred plumage in many species")}),
    "hops": ("moves by hopping or jumping", {"frog": (1, ""), "bird": (0.5, "small birds hop on the ground")}),
}

CIFAR10_ATTRIBUTES = tuple(CIFAR10_ATTRIBUTE_DOCS)
CIFAR10_ATTRIBUTE_MATRIX = np.array(
    [[float(CIFAR10_ATTRIBUTE_DOCS[a][1].get(c, (0.0, ""))[0]) for a in CIFAR10_ATTRIBUTES] for c in CIFAR10_CLASSES],
    dtype="float32",
)


@dataclasses.dataclass(frozen=True)
class ClassAttributes:
    """A class-attribute matrix with its names and (optionally) a seen/unseen split.

    Attributes:
        class_names, attribute_names: row and column names of ``matrix`` (C, A).
        seen, unseen: class ids of a proposed split (None when the source has none).
        validation: seen classes held out for validation (None when not given).
    """

    class_names: tuple
    attribute_names: tuple
    matrix: np.ndarray
    seen: tuple | None = None
    unseen: tuple | None = None
    validation: tuple | None = None

    def __post_init__(self):
        matrix = np.asarray(self.matrix, dtype="float32")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "attribute_names", tuple(str(n) for n in self.attribute_names))
        if matrix.shape != (len(self.class_names), len(self.attribute_names)):
            raise ValueError(f"attribute matrix of shape {matrix.shape} for {len(self.class_names)} classes and "
                             f"{len(self.attribute_names)} attributes.")
        for field in ("seen", "unseen", "validation"):
            ids = getattr(self, field)
            if ids is None:
                continue
            ids = tuple(int(i) for i in ids)
            bad = [i for i in ids if not 0 <= i < len(self.class_names)]
            if bad:
                raise ValueError(f"`{field}` ids {bad} are out of range 0..{len(self.class_names) - 1}.")
            object.__setattr__(self, field, ids)
        if self.seen is not None and self.unseen is not None:
            overlap = sorted(set(self.seen) & set(self.unseen))
            if overlap:
                raise ValueError(f"class ids {overlap} are both seen and unseen.")
        if self.validation is not None and self.seen is not None:
            outside = sorted(set(self.validation) - set(self.seen))
            if outside:
                raise ValueError(f"validation classes {outside} are not seen classes.")

    def subset(self, class_ids) -> np.ndarray:
        """The attribute rows of ``class_ids``."""
        return self.matrix[np.asarray(list(class_ids), dtype="int64")]

    def normalized(self) -> "ClassAttributes":
        """A copy with L2-normalised rows (xlsa17's ``att``)."""
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        return dataclasses.replace(self, matrix=self.matrix / np.where(norms > 0, norms, 1))


def cifar10_attributes() -> ClassAttributes:
    """The project's CIFAR-10 class attributes (see the module docstring), rows in CIFAR-10
    class order (airplane, automobile, ..., truck)."""
    return ClassAttributes(CIFAR10_CLASSES, CIFAR10_ATTRIBUTES, CIFAR10_ATTRIBUTE_MATRIX.copy())
