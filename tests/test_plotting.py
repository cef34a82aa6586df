"""Tests for epinn.plotting (learning curves)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from epinn import History, plot_learning_curves  # noqa: E402


@pytest.fixture
def history():
    return History(
        train_loss=[1.0, 0.6, 0.4, 0.3],
        val_loss=[1.1, 0.7, 0.65, 0.8],
        metrics={"mae": [0.9, 0.7, 0.5, 0.4], "val_mae": [0.95, 0.8, 0.7, 0.9],
                 "penalty": [0.1, 0.1, 0.1, 0.1]},
        epoch_time=[0.1] * 4,
        monitor="val_loss",
        best_epoch=3,
        params_epoch=3,
        stop_reason="completed",
    )


def _lines(ax):
    return {ln.get_label(): ln for ln in ax.get_lines()}


def test_draws_history_values(history):
    fig = plot_learning_curves(history)
    assert isinstance(fig, Figure)
    assert [a.get_title() for a in fig.axes] == ["loss", "mae"]  # penalty is not a metric
    lines = _lines(fig.axes[0])
    np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(lines["train"].get_ydata(), history.train_loss)
    np.testing.assert_array_equal(lines["validation"].get_ydata(), history.val_loss)
    np.testing.assert_array_equal(_lines(fig.axes[1])["validation"].get_ydata(),
                                  history.metrics["val_mae"])
    # The best epoch: a vertical line at x = 3 and a dot on the monitored curve.
    vline = lines["best epoch (3)"]
    np.testing.assert_array_equal(vline.get_xdata(), [3, 3])
    dots = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    assert len(dots) == 1 and dots[0].get_ydata()[0] == 0.65


def test_accepts_dict_and_selects_metrics(history):
    fig = plot_learning_curves(history.to_dict(), metrics=())
    assert [a.get_title() for a in fig.axes] == ["loss"]
    with pytest.raises(ValueError, match="metrics"):
        plot_learning_curves(history, metrics=("accuracy",))


def test_draws_into_given_axes_and_log_scale(history):
    fig = Figure()
    axes = fig.subplots(1, 2)
    out = plot_learning_curves(history, ax=axes, log_loss=True)
    assert out is fig and axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="ax"):
        plot_learning_curves(history, ax=axes[0])  # needs 2 axes


def test_no_validation_no_best(tmp_path):
    fig = plot_learning_curves(History(train_loss=[3.0, 2.0]))
    assert set(_lines(fig.axes[0])) == {"train"}
    fig.savefig(tmp_path / "lc.png")  # renders without a display
    assert (tmp_path / "lc.png").stat().st_size > 1000
    assert plt.get_fignums() == []  # no pyplot state touched


def test_bad_history():
    with pytest.raises(TypeError, match="history"):
        plot_learning_curves([1.0, 2.0])
    with pytest.raises(ValueError, match="history"):
        plot_learning_curves(History())


def test_plot_predictions():
    from epinn import plot_predictions

    fig = plot_predictions(np.arange(5.0), np.arange(5.0)[:, None] + 0.1)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], np.arange(5.0) + 0.1)
    np.testing.assert_allclose(_lines(ax)["prediction = truth"].get_xdata(), [0.0, 4.1])
    with pytest.raises(ValueError, match="y_pred"):
        plot_predictions(np.arange(5.0), np.arange(4.0))


def test_plot_decision_regions():
    from epinn import plot_decision_regions

    gx, gy = np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 9))
    grid_labels = (gx > 0).astype(int) + (gy > 0).astype(int)  # classes 0, 1, 2
    pts = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5]])
    fig = plot_decision_regions(gx, gy, grid_labels, pts, np.array([0, 1, 2]))
    ax = fig.axes[0]
    assert len(ax.collections) >= 3  # filled regions plus one scatter per class
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 1",
                                                                  "class 2"]
    with pytest.raises(ValueError, match="grid"):
        plot_decision_regions(gx, gy[:-1], grid_labels, pts, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        plot_decision_regions(gx, gy, grid_labels, pts, np.array([0, 1]))
