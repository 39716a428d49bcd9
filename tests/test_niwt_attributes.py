"""The project's CIFAR-10 class-attribute matrix and ClassAttributes."""

import numpy as np
import pytest

from keras_apps.data.cifar10 import CLASS_NAMES
from keras_apps.niwt.attributes import (
    CIFAR10_ATTRIBUTE_DOCS,
    CIFAR10_ATTRIBUTE_MATRIX,
    CIFAR10_ATTRIBUTES,
    ClassAttributes,
    cifar10_attributes,
)


def test_cifar10_matrix_is_documented_distinct_and_informative():
    attributes = cifar10_attributes()
    assert attributes.class_names == tuple(CLASS_NAMES)
    assert len(CIFAR10_ATTRIBUTES) >= 20 and attributes.matrix.shape == (10, len(CIFAR10_ATTRIBUTES))
    assert set(np.unique(CIFAR10_ATTRIBUTE_MATRIX)) <= {0.0, 0.5, 1.0}
    for a, (definition, values) in CIFAR10_ATTRIBUTE_DOCS.items():
        assert definition and set(values) <= set(CLASS_NAMES), a
        column = attributes.matrix[:, CIFAR10_ATTRIBUTES.index(a)]
        expected = [values.get(c, (0, ""))[0] for c in CLASS_NAMES]
        np.testing.assert_array_equal(column, expected)
        for c, (value, reason) in values.items():
            assert value == 1 or reason, f"{a}={value} for {c} needs its reason"
    assert len({tuple(row) for row in attributes.matrix}) == 10  # no two classes alike
    assert (attributes.matrix.std(axis=0) > 0).all()  # no constant attribute


def test_related_classes_are_each_others_nearest():
    m = cifar10_attributes().normalized().matrix
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1, rtol=1e-6)
    nearest = {CLASS_NAMES[i]: CLASS_NAMES[j] for i, j in enumerate(np.argsort(-(m @ m.T), axis=1)[:, 1])}
    assert nearest["cat"] == "dog" and nearest["truck"] == "automobile" and nearest["deer"] == "horse"
    assert nearest["airplane"] == "ship"


def test_class_attributes_checks():
    with pytest.raises(ValueError, match=r"class ids \[1\] are both seen and unseen"):
        ClassAttributes(("a", "b", "c"), ("x",), np.ones((3, 1)), seen=(0, 1), unseen=(1, 2))
    with pytest.raises(ValueError, match=r"shape \(3, 2\) for 3 classes and 1 attributes"):
        ClassAttributes(("a", "b", "c"), ("x",), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"`unseen` ids \[5\] are out of range 0..2"):
        ClassAttributes(("a", "b", "c"), ("x",), np.ones((3, 1)), unseen=(5,))
    rows = ClassAttributes(("a", "b"), ("x", "y"), [[1, 0], [0, 2]]).subset([1])
    np.testing.assert_array_equal(rows, [[0, 2]])
