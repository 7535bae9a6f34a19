"""Splits: nested labeled subsets, patients split without overlap."""

from __future__ import annotations

import numpy as np
import pytest

from cycleseg.model.data import clear_memo, labeled_indices
from cycleseg.model.data.splits import split_patients
from tests.model.data.trees import raises_user_error


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


@pytest.mark.parametrize(("n", "n_train", "n_val"), [(100, 75, 25), (8, 6, 2), (5, 4, 1), (3, 2, 1), (2, 1, 1)])
def test_split_patients_ratio(n, n_train, n_val):
    names = [f"patient{i:03d}" for i in range(n)]
    train, val = split_patients(names, seed=0)
    assert (len(train), len(val)) == (n_train, n_val)
    assert not set(train) & set(val) and sorted(train + val) == names


def test_split_patients_depends_on_seed_only():
    names = [f"patient{i:03d}" for i in range(100)]
    assert split_patients(names, 0) == split_patients(list(reversed(names)), 0)  # not on listing order
    assert split_patients(names, 0)[1] != split_patients(names, 1)[1]
    raises_user_error(lambda: split_patients(names[:1], 0), "at least 2 patients")


def test_labeled_indices_are_nested_with_exact_counts():
    subsets = {f: labeled_indices(200, f, seed=3) for f in (0.1, 0.2, 0.5, 1.0)}
    assert {f: len(s) for f, s in subsets.items()} == {0.1: 20, 0.2: 40, 0.5: 100, 1.0: 200}
    assert set(subsets[0.1]) < set(subsets[0.2]) < set(subsets[0.5]) < set(subsets[1.0])
    assert subsets[1.0].tolist() == list(range(200))
    for s in subsets.values():
        assert s.dtype == np.int64 and (np.diff(s) > 0).all()  # sorted, unique
    assert not np.array_equal(labeled_indices(200, 0.1, seed=4), subsets[0.1])
    assert np.array_equal(labeled_indices(200, 0.1, seed=3), subsets[0.1])


def test_labeled_indices_rounding_and_minimum():
    assert len(labeled_indices(5, 0.5, 0)) == 3  # 2.5 rounds half up
    assert len(labeled_indices(8994, 0.1, 0)) == 899  # 899.4
    assert len(labeled_indices(200, 0.001, 0)) == 1  # at least one labeled image
    raises_user_error(lambda: labeled_indices(10, 0.0, 0), "labeled_fraction")
    raises_user_error(lambda: labeled_indices(0, 0.5, 0), "no training images")
