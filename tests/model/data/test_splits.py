"""Splits: nested labeled subsets, patients split without overlap."""

from __future__ import annotations

import numpy as np
import pytest

from cycleseg.model.data import labeled_indices
from cycleseg.model.data.splits import hold_out, split_patients
from tests.model.data import clear_memo
from tests.model.data.trees import raises_user_error


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


# test = round(25 % of n) (at least 1, leaving 2); val = round(val_fraction of the rest) (at least 1)
@pytest.mark.parametrize(("n", "val_fraction", "sizes"), [
    (100, 0.1, (67, 8, 25)),  # 25 test; 10 % of 75 = 7.5 → 8 val
    (100, 0.2, (60, 15, 25)),
    (8, 0.1, (5, 1, 2)),
    (5, 0.1, (3, 1, 1)),  # 1.25 → 1 test
    (3, 0.5, (1, 1, 1)),
])
def test_split_patients_train_val_test(n, val_fraction, sizes):
    names = [f"patient{i:03d}" for i in range(n)]
    train, val, test = split_patients(names, 0, val_fraction)
    assert (len(train), len(val), len(test)) == sizes
    assert sorted(train + val + test) == names and len(set(train + val + test)) == n


def test_split_patients_depends_on_seed_only():
    names = [f"patient{i:03d}" for i in range(100)]
    assert split_patients(names, 0, 0.1) == split_patients(list(reversed(names)), 0, 0.1)  # not on listing order
    assert split_patients(names, 0, 0.1)[2] != split_patients(names, 1, 0.1)[2]
    raises_user_error(lambda: split_patients(names[:2], 0, 0.1), "at least 3 patients")


def test_hold_out_draws_the_val_split_from_train():
    train, val = hold_out(1000, 0.1, seed=0)
    assert (len(train), len(val)) == (900, 100) and not set(train) & set(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(1000))
    assert np.array_equal(hold_out(1000, 0.1, 0)[1], val) and not np.array_equal(hold_out(1000, 0.1, 1)[1], val)
    assert [len(x) for x in hold_out(3, 0.01, 0)] == [2, 1]  # at least one on each side
    raises_user_error(lambda: hold_out(1, 0.1, 0), "at least 2")


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
