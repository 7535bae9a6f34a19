import math

import pytest
import torch

from cycleseg.model.metrics import ConfusionMatrix

# A 2×4 batch over 4 classes; class 3 appears in neither target nor prediction.
TARGET = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 0]]])
PRED = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
# Counted (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (0,0); the 255 pixel is skipped.
# Rows = target, columns = prediction:
EXPECTED_MAT = [
    [2, 1, 0, 0],
    [0, 2, 0, 0],
    [1, 0, 1, 0],
    [0, 0, 0, 0],
]
# class 0: TP 2, FP = col 0 (3) - 2 = 1, FN = row 0 (3) - 2 = 1 -> 2 / 4 = 0.5
# class 1: TP 2, FP = col 1 (3) - 2 = 1, FN = row 1 (2) - 2 = 0 -> 2 / 3
# class 2: TP 1, FP = col 2 (1) - 1 = 0, FN = row 2 (2) - 1 = 1 -> 1 / 2
# class 3: TP + FP + FN = 0 -> NaN, left out of the mean
# mIoU = (1/2 + 2/3 + 1/2) / 3 = 5/9; pixel accuracy = 5 correct / 7 counted
EXPECTED_IOU = [0.5, 2 / 3, 0.5]


def _filled() -> ConfusionMatrix:
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    return cm


def test_hand_made_matrix_iou_miou_and_accuracy():
    cm = _filled()
    assert cm.mat.tolist() == EXPECTED_MAT
    assert cm.mat.dtype == torch.int64
    iou = cm.class_iou()
    assert iou[:3] == pytest.approx(EXPECTED_IOU)
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(5 / 9)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    assert all(type(v) is float for v in [*iou, cm.miou(), cm.pixel_accuracy()])


def test_ignored_pixels_do_not_count_whatever_is_predicted_there():
    pred = PRED.clone()
    pred[0, 1, 2] = 3  # the pixel whose target is 255; even an out-of-range guess there is ignored
    cm = ConfusionMatrix(4)
    cm.update(pred, TARGET)
    assert cm.mat.tolist() == EXPECTED_MAT


def test_class_only_predicted_counts_with_iou_zero():
    # target: four background pixels; prediction puts one of them into class 1.
    # class 0: TP 3, FP 0, FN 1 -> 3/4; class 1: TP 0, FP 1, FN 0 -> 0; class 2 absent -> NaN
    # mIoU = (3/4 + 0) / 2 = 3/8
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))
    iou = cm.class_iou()
    assert iou[:2] == [0.75, 0.0]
    assert math.isnan(iou[2])
    assert cm.miou() == pytest.approx(0.375)
    assert cm.pixel_accuracy() == pytest.approx(0.75)


def test_background_is_a_class_in_the_mean():
    # A perfect background but every object pixel wrong: background IoU must pull the mean up
    # (class 0: TP 2, FN 0, FP 1 -> 2/3; class 1: TP 0, FN 1 -> 0; mIoU = 1/3, not 0).
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1]))
    assert cm.miou() == pytest.approx(1 / 3)


def test_one_matrix_over_batches_equals_the_whole_set():
    # Batch 1 has classes 0/1, batch 2 only class 2: per-batch mIoU averaging would differ.
    cm = ConfusionMatrix(4)
    cm.update(PRED[:, :1], TARGET[:, :1])
    cm.update(PRED[:, 1:], TARGET[:, 1:])
    assert cm.mat.tolist() == EXPECTED_MAT
    assert cm.miou() == pytest.approx(5 / 9)


def test_merge_and_add_combine_counts():
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(PRED[:, :1], TARGET[:, :1])
    b.update(PRED[:, 1:], TARGET[:, 1:])
    assert (a + b).mat.tolist() == EXPECTED_MAT
    assert a.merge(b).miou() == pytest.approx(5 / 9)
    assert a.mat.sum() == 4  # merging leaves the operands alone
    with pytest.raises(ValueError, match="3-class"):
        a.merge(ConfusionMatrix(3))


def test_scores_are_argmaxed_over_the_class_dim():
    logits = torch.nn.functional.one_hot(PRED, 4).permute(0, 3, 1, 2).float() * 5.0 - 1.0
    cm = ConfusionMatrix(4)
    cm.update(logits, TARGET)
    assert cm.mat.tolist() == EXPECTED_MAT


def test_uint8_targets_and_an_empty_matrix():
    cm = ConfusionMatrix(4)
    cm.update(PRED.to(torch.uint8), TARGET.to(torch.uint8))
    assert cm.mat.tolist() == EXPECTED_MAT
    cm = ConfusionMatrix(4)  # nothing counted
    assert int(cm.mat.sum()) == 0
    assert math.isnan(cm.miou())
    assert math.isnan(cm.pixel_accuracy())
    assert all(math.isnan(v) for v in cm.class_iou())


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        (torch.tensor([0, 4]), torch.tensor([0, 1])),  # prediction out of range
        (torch.tensor([0, 0]), torch.tensor([0, 4])),  # target out of range (4*4+0 would alias a bin)
        (torch.tensor([0, 0]), torch.tensor([0, 7])),
    ],
)
def test_out_of_range_classes_raise(pred, target):
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        cm.update(pred, target)
    assert int(cm.mat.sum()) == 0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="does not match"):
        ConfusionMatrix(4).update(torch.zeros(2, 3), torch.zeros(2, 4))
