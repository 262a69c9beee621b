"""Did a model learn? (grids.learning): every model judged against its degraded input, per mean
and per image."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from grids.learning import BELOW_INPUT, DID_NOT_LEARN, LEARNED, harmed_images, judge, learning, model_learning


@pytest.mark.parametrize(
    ("gain", "outcome"),
    [
        (2.0, LEARNED),
        (0.5, LEARNED),
        (0.49, DID_NOT_LEARN),
        (0.0, DID_NOT_LEARN),
        (-0.01, DID_NOT_LEARN),  # an identity's retraining noise, not a failure
        (-0.11, BELOW_INPUT),
        (math.nan, DID_NOT_LEARN),
    ],
)
def test_learning_outcome_of_a_mean_gain(gain, outcome):
    assert learning(gain, 0.5) == outcome


def test_a_model_over_its_members_is_below_its_input_if_any_member_is():
    assert model_learning([3.0, 2.0], 0.5) == LEARNED
    assert model_learning([3.0, -0.2], 0.5) == BELOW_INPUT  # a mean of +1.4 dB hides a failed member
    assert model_learning([0.4, 0.3], 0.5) == DID_NOT_LEARN
    assert model_learning([], 0.5) == DID_NOT_LEARN


def test_harmed_images_are_those_worse_than_the_input_by_more_than_half_a_db():
    assert harmed_images([1.0, -0.5, -0.51, -3.0, math.nan]) == 2


def test_judge_per_model_and_degradation():
    rows = pd.DataFrame(
        {
            "trained_on": ["m", "m", "m", "n"],
            "test_set": "t",
            "degradation": ["x", "x", "x", "x"],
            "gain": [4.0, 4.0, -2.0, 0.2],
        }
    )
    judged = judge(rows, 0.5)
    assert judged.loc[("m", "t", "x")].to_dict() == {"gain": 2.0, "harmed": 1, "learning": LEARNED}
    assert judged.loc[("n", "t", "x")].to_dict() == {"gain": pytest.approx(0.2), "harmed": 0, "learning": DID_NOT_LEARN}
    assert str(judged.harmed.dtype) == "int64"
