"""Episodic (joint-class) AP over episodes: hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest

from os2d.eval.episodic import Episode, episodic_ap
from os2d.eval.voc import ImageGT, ImagePred

A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]


def _data():
    # image 0: class 0 at A, class 1 at B; image 1: class 2 at C
    gts = [ImageGT(np.array([A, B], float), [0, 1]), ImageGT(np.array([C], float), [2])]
    preds = [
        ImagePred(np.array([A, C, B], float), [0, 1, 1], [0.9, 0.8, 0.7]),  # TP, FP, TP
        ImagePred(np.array([A, C], float), [2, 2], [0.95, 0.6]),            # FP, TP
    ]
    return gts, preds


def test_joint_ranking_across_classes():
    gts, preds = _data()
    # episode {0, 1}: ranked 0.9 TP, 0.8 FP, 0.7 TP with 2 positives -> AP = 0.5*1 + 0.5*2/3
    # episode {2}: ranked 0.95 FP, 0.6 TP with 1 positive -> AP = 1 * 1/2
    result = episodic_ap(gts, preds, [Episode((0, 1)), Episode((2,))])
    np.testing.assert_allclose(result.ap_per_episode, [0.5 + 1 / 3, 0.5])
    assert result.mean_ap == pytest.approx((0.5 + 1 / 3 + 0.5) / 2)
    # per-class mAP: class 0 AP 1, class 1 AP 0.5 -> 0.75; class 2 AP 0.5
    np.testing.assert_allclose(result.map_per_episode, [0.75, 0.5])


def test_episode_image_subset():
    gts, preds = _data()
    result = episodic_ap(gts, preds, [Episode((0, 1, 2), images=(1,))])
    # only image 1: FP (0.95), TP (0.6) of class 2
    assert result.ap_per_episode.tolist() == [0.5]


def test_episode_without_positives_is_nan_and_skipped():
    gts, preds = _data()
    result = episodic_ap(gts, preds, [Episode((5,)), Episode((2,))])
    assert np.isnan(result.ap_per_episode[0]) and result.mean_ap == 0.5
    assert result.to_dict()["ap_per_episode"] == [None, 0.5]


def test_error_no_episodes():
    gts, preds = _data()
    with pytest.raises(ValueError, match="no episodes"):
        episodic_ap(gts, preds, [])


def test_error_episode_without_classes():
    gts, preds = _data()
    with pytest.raises(ValueError, match="episode 0 has no classes"):
        episodic_ap(gts, preds, [Episode(())])


def test_error_image_index_out_of_range():
    gts, preds = _data()
    with pytest.raises(ValueError, match=r"image indices \[7\]"):
        episodic_ap(gts, preds, [Episode((0,), images=(7,))])


def test_error_length_mismatch():
    gts, preds = _data()
    with pytest.raises(ValueError, match="2 ground-truth images but 1"):
        episodic_ap(gts, preds[:1], [Episode((0,))])
