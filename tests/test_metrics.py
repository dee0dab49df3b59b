"""Per-horizon metrics and naive baselines on hand-computed examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgecomp.metrics import (
    horizon_metrics,
    naive_forecasts,
    relative_change,
    scored_note,
    summarize,
)

# N = 2 windows, H = 2 steps, F_out = 2 targets; indexed [n, h, target]
Y_TRUE = np.stack([np.array([[10, 20], [30, 40]]), np.array([[0, 1], [2, -4]])], axis=-1)
Y_PRED = np.stack([np.array([[11, 18], [30, 44]]), np.array([[1, 1], [1, -2]])], axis=-1)
# errors: target 0 [[1, -2], [0, 4]]; target 1 [[1, 0], [-1, 2]]


def test_mae_rmse_by_hand():
    m = horizon_metrics(Y_TRUE, Y_PRED)
    # step 0: target 0 mean(1, 0) = 0.5, target 1 mean(1, 1) = 1
    # step 1: target 0 mean(2, 4) = 3,   target 1 mean(0, 2) = 1
    assert m["mae"] == pytest.approx([0.75, 2.0])
    # rmse per target then averaged: step 0 (sqrt(0.5) + 1) / 2, step 1 (sqrt(10) + sqrt(2)) / 2
    assert m["rmse"] == pytest.approx(
        [(math.sqrt(0.5) + 1) / 2, (math.sqrt(10) + math.sqrt(2)) / 2]
    )


def test_mape_default_floor_by_hand():
    # floors: target 0 0.1 * 25 = 2.5 (all kept); target 1 0.1 * 1.75 = 0.175 (truth 0 dropped)
    # step 0: target 0 mean(1/10, 0/30) = 0.05; target 1 only 1/2 = 0.5  -> 27.5 %
    # step 1: target 0 mean(2/20, 4/40) = 0.1; target 1 mean(0/1, 2/4) = 0.25 -> 17.5 %
    assert horizon_metrics(Y_TRUE, Y_PRED)["mape"] == pytest.approx([27.5, 17.5])


def test_mape_floor_is_a_tenth_of_mean_abs_truth():
    # mean |truth| = 76, floor 7.6: the truth 4 (error 100 %) is left out, the others are 10 % off
    y_true = np.array([100.0, 100.0, 100.0, 4.0]).reshape(4, 1, 1)
    y_pred = np.array([110.0, 90.0, 110.0, 8.0]).reshape(4, 1, 1)
    assert horizon_metrics(y_true, y_pred)["mape"] == pytest.approx([10.0])
    assert horizon_metrics(y_true, y_pred, mape_floor=0.0)["mape"] == pytest.approx([32.5])


def test_mape_explicit_floors():
    # floor 1.5 drops target 1 truths 0 and 1: step 1 target 1 is 2/4 alone -> (0.1 + 0.5) / 2
    assert horizon_metrics(Y_TRUE, Y_PRED, mape_floor=1.5)["mape"] == pytest.approx([27.5, 30.0])
    assert horizon_metrics(Y_TRUE, Y_PRED, mape_floor=[2.5, 1.5])["mape"] == pytest.approx(
        [27.5, 30.0]
    )
    # floors [35, 0]: step 0 keeps target 1 only (2 -> 0.5; truth 0 is always dropped);
    # step 1 keeps 4/40 of target 0 and (0/1, 2/4) of target 1 -> (0.1 + 0.25) / 2
    assert horizon_metrics(Y_TRUE, Y_PRED, mape_floor=[35, 0])["mape"] == pytest.approx(
        [50.0, 17.5]
    )


def test_mape_undefined_is_none_and_json_safe():
    m = horizon_metrics(Y_TRUE, Y_PRED, mape_floor=1000.0)
    assert m["mape"] == [None, None]
    assert json.loads(json.dumps(m)) == m
    assert all(type(v) is float for v in m["mae"] + m["rmse"])
    assert summarize(m)["mape"] is None


def test_summarize_means_over_horizon():
    m = {"mae": [1.0, 2.0, 6.0], "rmse": [2.0, 2.0, 2.0], "mape": [None, 10.0, 20.0]}
    assert summarize(m) == pytest.approx({"mae": 3.0, "rmse": 2.0, "mape": 15.0})


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (Y_TRUE, Y_PRED[:, :1], "shapes differ"),
        (Y_TRUE[0], Y_PRED[0], r"y_true must be \[N, H, F_out\]"),
        (Y_TRUE, np.where(Y_PRED == 1, np.nan, Y_PRED), "y_pred holds NaN"),
        (Y_TRUE[:0], Y_PRED[:0], "no window"),
    ],
)
def test_metrics_refuse_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        horizon_metrics(y_true, y_pred)


def test_metrics_refuse_negative_floor():
    with pytest.raises(ValueError, match="mape_floor must be"):
        horizon_metrics(Y_TRUE, Y_PRED, mape_floor=-1.0)


# naive baselines: column 0 is 0..9, column 1 is 100, 102, ..., 118
VALUES = np.stack([np.arange(10.0), 100.0 + 2 * np.arange(10.0)], axis=1)


def test_last_value_by_hand():
    out = naive_forecasts(VALUES, [3, 4], input_len=3, horizon=2, target_index=[1])
    # window 3 ends at row 5 (110), window 4 at row 6 (112)
    np.testing.assert_array_equal(out["last_value"], [[[110], [110]], [[112], [112]]])
    assert "seasonal_naive" not in out


def test_seasonal_naive_by_hand():
    out = naive_forecasts(
        VALUES, [3, 4], input_len=3, horizon=2, target_index=[0, 1], seasonal_period=4
    )
    # window 3 forecasts rows 6, 7 from rows 2, 3; window 4 rows 7, 8 from rows 3, 4
    np.testing.assert_array_equal(out["seasonal_naive"][:, :, 0], [[2, 3], [3, 4]])
    np.testing.assert_array_equal(out["seasonal_naive"][:, :, 1], [[104, 106], [106, 108]])


def test_seasonal_naive_shorter_than_horizon_stays_in_the_past():
    # period 2, horizon 3, window at 3 (inputs rows 3..5): forecasts rows 6, 7, 8 from rows 4, 5, 4
    out = naive_forecasts(VALUES, [3], input_len=3, horizon=3, target_index=[0], seasonal_period=2)
    np.testing.assert_array_equal(out["seasonal_naive"][0, :, 0], [4, 5, 4])
    one = naive_forecasts(VALUES, [3], input_len=3, horizon=3, target_index=[0], seasonal_period=1)
    np.testing.assert_array_equal(one["seasonal_naive"], one["last_value"])


def test_seasonal_naive_refuses_missing_history():
    with pytest.raises(ValueError, match=r"1 window\(s\) start before row 4; drop those windows"):
        naive_forecasts(VALUES, [3, 4], input_len=3, horizon=2, target_index=[0], seasonal_period=7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"starts": [6]}, "windows do not fit"),
        ({"starts": [-1]}, "windows do not fit"),
        ({"target_index": [2]}, r"target_index \[2\]"),
        ({"seasonal_period": 0}, "seasonal_period must be a positive integer"),
        ({"values": VALUES[:, 0]}, r"values must be \[T, F\]"),
    ],
)
def test_naive_refuses_bad_input(kwargs, message):
    args = {
        "values": VALUES,
        "starts": [0],
        "input_len": 3,
        "horizon": 2,
        "target_index": [0],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        naive_forecasts(**args)


# masked metrics: only observed truth is scored
MASK = np.ones(Y_TRUE.shape, dtype=bool)
MASK[1, 1, 0] = False  # window 1, step 1, target 0: imputed


def test_planted_imputed_value_changes_no_metric():
    # setup: the imputed entry gets a wild truth and a wild forecast
    planted_true, planted_pred = Y_TRUE.astype(float), Y_PRED.astype(float)
    planted_true[1, 1, 0], planted_pred[1, 1, 0] = 1e6, -1e6
    # execute
    clean = horizon_metrics(Y_TRUE, Y_PRED, observed=MASK)
    planted = horizon_metrics(planted_true, planted_pred, observed=MASK)
    # assert
    for key in ("mae", "rmse", "mape"):
        assert planted[key] == pytest.approx(clean[key])
    assert horizon_metrics(planted_true, planted_pred)["mae"][1] > 1e5  # unmasked: it counts


def test_masked_mae_by_hand_with_counts():
    m = horizon_metrics(Y_TRUE, Y_PRED, observed=MASK)
    # step 1: target 0 keeps window 0 only (error 2), target 1 mean(0, 2) = 1 -> 1.5
    assert m["mae"] == pytest.approx([0.75, 1.5])
    assert m["scored"] == [4, 3] and m["imputed"] == [0, 1]
    assert (m["n_scored"], m["n_imputed"]) == (7, 1)
    assert m["unscored"] == {}


def test_imputed_truth_may_be_nan():
    truth = Y_TRUE.astype(float)
    truth[1, 1, 0] = np.nan
    masked = horizon_metrics(truth, Y_PRED, observed=MASK)
    assert masked["mae"] == pytest.approx(horizon_metrics(Y_TRUE, Y_PRED, observed=MASK)["mae"])
    with pytest.raises(ValueError, match="y_true holds NaN"):
        horizon_metrics(truth, Y_PRED)


def test_step_without_observed_value_says_so():
    mask = MASK.copy()
    mask[:, 1, :] = False
    m = horizon_metrics(Y_TRUE, Y_PRED, observed=mask)
    assert m["mae"][1] is None and m["rmse"][1] is None and m["mape"][1] is None
    assert m["mae"][0] == pytest.approx(0.75)
    assert "no observed value" in m["unscored"]["h2"]
    assert scored_note(m).endswith("no observed value at h2 (n/a)")
    assert json.loads(json.dumps(m)) == m
    assert summarize(m)["mae"] == pytest.approx(0.75)


def test_baseline_scored_on_observed_values_only():
    # the last-value baseline against a truth whose imputed entry copies the last input (as
    # forward fill does) would look perfect there; the mask leaves it out
    truth = np.array([[[5.0], [5.0]]])  # step 1 forward-filled from step 0
    last = np.array([[[5.0], [5.0]]])
    mask = np.array([[[True], [False]]])
    m = horizon_metrics(truth, last, observed=mask)
    assert m["mae"] == [0.0, None] and m["n_imputed"] == 1


@pytest.mark.parametrize(
    ("observed", "message"),
    [(MASK.astype(int), "boolean mask"), (MASK[:, :1], "observed mask shape")],
)
def test_bad_mask_refused(observed, message):
    with pytest.raises(ValueError, match=message):
        horizon_metrics(Y_TRUE, Y_PRED, observed=observed)


def test_relative_change_keeps_none():
    assert relative_change([1.1, None, 2.0], [1.0, 1.0, 0.0]) == pytest.approx([0.1, None, None])


def test_observed_targets_on_real_data(traffic_path, traffic_config):
    from edgecomp.data import prepare
    from edgecomp.metrics import observed_targets

    dataset = prepare(traffic_path, traffic_config)
    mask = observed_targets(dataset, "val")
    truth = dataset.raw_targets("val")
    assert mask.shape == truth.shape and mask.dtype == np.bool_
    raw = dataset.raw.to_numpy(dtype="float64")[:, dataset.target_index]
    rows = dataset.val.starts[:, None] + traffic_config.input_len + np.arange(4)
    assert (mask == ~np.isnan(raw[rows])).all()
    assert 0 < (~mask).sum() < mask.size  # the validation split has a few imputed counts


def test_bench_accuracy_scores_observed_values_and_says_how_many():
    from edgecomp.bench.runner import _accuracy

    # setup: the imputed entry is wildly off; the manifest's reference is the clean MAE
    pred = Y_PRED.astype(float)
    pred[1, 1, 0] = 1e6
    reference = horizon_metrics(Y_TRUE, Y_PRED, observed=MASK)
    # execute
    acc = _accuracy(Y_TRUE, pred, {"reference": reference, "split": "test"}, "test", 2, MASK)
    # assert
    assert acc["artifact"]["mae"] == pytest.approx(reference["mae"])
    assert acc["delta_mae_pct"] == pytest.approx([0.0, 0.0])
    assert scored_note(acc["artifact"]) == "scored 7 observed values, left out 1 imputed ones"


def test_scored_note_reads_per_step_counts_and_old_records():
    assert scored_note({"n_scored": [3, 4]}) == (
        "scored 7 observed values, left out an unknown number of imputed ones"
    )
    assert "older edgecomp" in scored_note({"mae": [1.0]})
