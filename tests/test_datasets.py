"""Tests for epinn.datasets: the bundled outbreak data and their loaders."""

import csv
import dataclasses
import datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import epinn
from epinn import datasets

BOARDING_IN_BED = [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]

# name -> (bundled file, main column, time column or None, number of records)
FILES = {
    "boarding_school": ("boarding_school_influenza_1978.csv", "in_bed", "day", 14),
    "bombay_plague": ("bombay_plague_1905_06.csv", "deaths", "week", 31),
    "ebola_kikwit": ("ebola_kikwit_1995.csv", "onset", None, 192),
    "zika_yap": ("zika_yap_2007.csv", "cases", None, 29),
    "philadelphia_1918": ("philadelphia_influenza_1918.csv", "pim", None, 122),
}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _bundled(filename):
    return resources.files("epinn") / "data_files" / filename


def _read(filename):
    """Independent reader: (comment lines, dict of columns as strings)."""
    lines = _bundled(filename).read_text().splitlines()
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
    return comments, {k: [r[k] for r in rows] for k in rows[0]}


def test_list_datasets():
    assert datasets.list_datasets() == list(FILES)


def test_boarding_school_values():
    data = datasets.load_boarding_school()
    np.testing.assert_array_equal(data.counts, BOARDING_IN_BED)
    np.testing.assert_array_equal(data.series["in_bed"], BOARDING_IN_BED)
    np.testing.assert_array_equal(data.t, np.arange(1.0, 15.0))
    assert data.t.dtype == np.float64 and data.counts.dtype == np.float64
    np.testing.assert_array_equal(
        data.series["convalescent"], [0, 0, 0, 0, 9, 17, 105, 162, 176, 166, 150, 85, 47, 20]
    )
    assert data.population == 763
    assert dict(data.y0) == {"S": 762.0, "I": 1.0, "R": 0.0}
    assert sum(data.y0.values()) == data.population
    assert data.dates[0] == "1978-01-22" and data.dates[-1] == "1978-02-04"
    assert data.origin == "1978-01-21"
    assert (data.time_unit, data.observed) == ("day", "prevalence")
    assert "BMJ" in data.source or "BMJ" in data.citation


@pytest.mark.parametrize("name", list(FILES))
def test_values_match_csv(name):
    filename, main, time_col, n = FILES[name]
    comments, cols = _read(filename)
    data = datasets.load_dataset(name)
    assert len(data.t) == len(data.counts) == n
    np.testing.assert_array_equal(data.counts, [float(v) for v in cols[main]])
    for key, values in data.series.items():
        expected = [v == "True" for v in cols[key]] if values.dtype == bool else cols[key]
        np.testing.assert_array_equal(values, np.asarray(expected, dtype=values.dtype))
    if time_col is not None:
        np.testing.assert_array_equal(data.t, [float(v) for v in cols[time_col]])
        assert time_col not in data.series
    else:
        assert data.t[0] == 0.0
    assert data.source == "\n".join(comments)


@pytest.mark.parametrize("name", list(FILES))
def test_every_dataset_is_well_formed(name):
    data = datasets.load_dataset(name)
    assert data.name == name
    assert data.citation.strip() and data.description.strip() and data.source.strip()
    assert data.title.strip() and len(data.title) <= 60
    assert data.time_unit in ("day", "week")
    assert data.observed in ("prevalence", "incidence", "deaths")
    assert np.all(np.diff(data.t) > 0)
    assert np.all(np.isfinite(data.counts)) and np.all(data.counts >= 0)
    assert data.population is None or isinstance(data.population, int)
    assert name in repr(data)
    if data.dates is not None:
        # Dates and t agree: t counts time_units from the origin date.
        step = 7 if data.time_unit == "week" else 1
        origin = datetime.date.fromisoformat(data.origin)
        days = [(datetime.date.fromisoformat(d) - origin).days for d in data.dates]
        np.testing.assert_array_equal(np.asarray(days, float), data.t * step)


def test_other_totals_and_facts():
    zika = datasets.load_zika_yap()
    assert zika.counts.sum() == 108 and zika.population == 7391
    assert zika.dates[0] == "2007-02-18" and zika.time_unit == "week"
    bombay = datasets.load_bombay_plague()
    assert bombay.dates is None and bombay.origin is None
    assert bombay.counts[0] == 4 and bombay.counts.max() == 925
    ebola = datasets.load_ebola_kikwit()
    assert ebola.series["reporting"].dtype == bool
    first_daily = ebola.dates.index("1995-03-01")
    assert ebola.series["reporting"][0]  # the index case's day
    assert not ebola.series["reporting"][1:first_daily].any()
    assert ebola.series["reporting"][first_daily:].all()
    phila = datasets.load_philadelphia_1918()
    assert phila.dates[-1] == "1918-12-31" and phila.counts.max() == 803


def test_boarding_school_variants():
    main = datasets.load_boarding_school()
    _, cols = _read("boarding_school_influenza_1978_variants.csv")
    # The default digitisation is the outbreaks column of the variants file.
    np.testing.assert_array_equal(main.counts, np.asarray(cols["outbreaks_in_bed"], float))
    expected = {
        "pomp": "pomp_bsflu_B",
        "epimdr": "epimdr_flu_cases",
        "benmaier": "benmaier_digitised",
    }
    for variant, col in expected.items():
        data = datasets.load_boarding_school(variant=variant)
        np.testing.assert_array_equal(data.counts, np.asarray(cols[col], float))
        assert not np.array_equal(data.counts, main.counts)  # a genuinely other digitisation
        np.testing.assert_array_equal(data.t, main.t)
        assert data.dates == main.dates and data.population == 763
        assert data.citation != main.citation
    pomp = datasets.load_dataset("boarding_school", variant="pomp")
    convalescent = np.asarray(cols["pomp_bsflu_C"], float)
    np.testing.assert_array_equal(pomp.series["convalescent"], convalescent)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="name") as info:
        datasets.load_dataset("boarding-school")
    for valid in FILES:
        assert valid in str(info.value)
    with pytest.raises(TypeError, match="name"):
        datasets.load_dataset(3)
    with pytest.raises(ValueError, match="variant") as info:
        datasets.load_boarding_school(variant="nope")
    assert "pomp" in str(info.value)


def test_immutable():
    data = datasets.load_boarding_school()
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.counts = None
    with pytest.raises(ValueError):
        data.counts[0] = 1.0
    with pytest.raises(ValueError):
        data.series["in_bed"][0] = 1.0
    with pytest.raises(TypeError):
        data.series["new"] = data.t
    with pytest.raises(TypeError):
        data.y0["S"] = 0.0
    # Loading again is unaffected by anything a caller did.
    np.testing.assert_array_equal(datasets.load_boarding_school().counts, BOARDING_IN_BED)


@pytest.mark.parametrize("name", list(FILES))
def test_to_csv_round_trip(name, tmp_path):
    data = datasets.load_dataset(name)
    path = tmp_path / f"{name}.csv"
    text = data.to_csv(path)
    assert path.read_text() == text
    lines = text.splitlines()
    assert [ln[2:] for ln in lines if ln.startswith("#")] == data.source.splitlines()
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
    np.testing.assert_array_equal([float(r[data.time_unit]) for r in rows], data.t)
    for key, values in data.series.items():
        got = [r[key] == "True" if values.dtype == bool else float(r[key]) for r in rows]
        np.testing.assert_array_equal(got, values)
    if data.dates is not None:
        assert tuple(r["date"] for r in rows) == data.dates


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data not beside the repository")
def test_bundled_files_equal_shared_data():
    for filename, *_ in FILES.values():
        assert _bundled(filename).read_text() == (SHARED / filename).read_text()
    variants = "boarding_school_influenza_1978_variants.csv"
    assert _bundled(variants).read_text() == (SHARED / variants).read_text()


def test_top_level_exports():
    assert epinn.load_dataset is datasets.load_dataset
    assert epinn.OutbreakData is datasets.OutbreakData
    assert epinn.list_datasets() == datasets.list_datasets()


# --- what each series is, and its observation times (issue 21, item 4) ---------------------

OBSERVABLE = {  # name -> (observable, model, label)
    "boarding_school": ("I", "SIR", None),
    "bombay_plague": ("deaths", "SIRD", "end"),
    "ebola_kikwit": ("incidence", "SEIR", "start"),
    "zika_yap": ("incidence", "SIR", "start"),
    "philadelphia_1918": ("deaths", "SIRD", "start"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_observable_is_in_the_models_vocabulary(name):
    # The stated observable is a name epinn.observe accepts for a trajectory of the stated
    # model, and observe returns one value per observation time.
    import jax.numpy as jnp

    from epinn import compartmental
    from epinn.observation import observables, observe

    data = datasets.load_dataset(name)
    assert (data.observable, data.model, data.label) == OBSERVABLE[name]
    assert data.what.split(":")[0].split(" ")[0] in ("prevalence", "incidence", "deaths")
    model = getattr(compartmental, data.model)()
    obs = data.observation_times()
    rates = {r: 0.3 for r in model.rate_names}
    y0 = {c: 0.0 for c in model.compartments}
    y0.update(S=99.0, I=1.0)
    grid = jnp.asarray(np.concatenate([[obs.t0], obs.ts]))
    traj = compartmental.solve(model, {**rates, "N": 100.0}, y0, grid)
    assert data.observable in observables(traj)
    series = observe(traj, data.observable)
    expected = len(obs.ts) if data.label is not None else len(obs.ts) + 1
    assert series.shape == (expected,)


def _week_ends_in_days(dates):
    """Independent reference: each week-start date + 7 days, in days since the first start."""
    first = datetime.date.fromisoformat(dates[0])
    return [(datetime.date.fromisoformat(d) + datetime.timedelta(days=7) - first).days
            for d in dates]


def test_observation_times_of_the_bundled_series():
    zika = datasets.load_zika_yap()
    weeks = zika.observation_times()
    assert (weeks.t0, weeks.unit, weeks.origin) == (0.0, "week", "2007-02-18")
    np.testing.assert_array_equal(weeks.ts, zika.t + 1.0)  # onset week k covers (k, k+1]
    np.testing.assert_array_equal(weeks.counts, zika.counts)
    days = zika.observation_times("day")
    np.testing.assert_array_equal(days.ts, _week_ends_in_days(zika.dates))
    assert days.t0 == 0.0
    bombay = datasets.load_bombay_plague().observation_times()
    np.testing.assert_array_equal(bombay.ts, np.arange(1.0, 32.0))  # week k ends at k
    assert bombay.t0 == 0.0 and bombay.origin is None
    boarding = datasets.load_boarding_school().observation_times()
    np.testing.assert_array_equal(boarding.ts, np.arange(1.0, 15.0))  # prevalence at t
    assert boarding.t0 == 0.0  # where the usual y0 holds
    ebola = datasets.load_ebola_kikwit()
    daily = ebola.observation_times()
    assert ebola.dates[ebola.first_observed] == "1995-03-01"  # daily reporting from here
    assert daily.t0 == (datetime.date(1995, 3, 1) - datetime.date(1995, 1, 6)).days
    np.testing.assert_array_equal(daily.ts, ebola.t[ebola.first_observed:] + 1.0)
    assert ebola.series["reporting"][ebola.first_observed:].all()
    with pytest.raises(ValueError, match="unit"):
        zika.observation_times("month")


def test_interval_counts_labels_and_units():
    counts = [0, 3, 5, 2]
    starts = ["2007-02-18", "2007-02-25", "2007-03-04", "2007-03-11"]
    ends = ["2007-02-24", "2007-03-03", "2007-03-10", "2007-03-17"]  # last day of each week
    a = datasets.interval_counts(counts, dates=starts, label="start")
    np.testing.assert_array_equal(a.ts, [7, 14, 21, 28])
    assert a.t0 == 0.0 and a.origin == "2007-02-18" and a.unit == "day"
    # The same weeks named by their end ("week ending" = the day after the last day).
    after = [(datetime.date.fromisoformat(d) + datetime.timedelta(days=1)).isoformat()
             for d in ends]
    b = datasets.interval_counts(counts, dates=after, label="end")
    np.testing.assert_array_equal(b.ts, a.ts)
    assert (b.t0, b.origin) == (a.t0, a.origin)
    w = datasets.interval_counts(counts, dates=np.array(starts, dtype="datetime64[D]"),
                                 label="start", unit="week")
    np.testing.assert_array_equal(w.ts, [1, 2, 3, 4])
    # An explicit origin shifts every time by the same number of units.
    o = datasets.interval_counts(counts, dates=starts, label="start", origin="2007-02-11")
    np.testing.assert_array_equal(o.ts, a.ts + 7)
    assert o.t0 == 7.0
    # Numbered weeks: label "end" (week k ends at k) and "start" (week k starts at k).
    e = datasets.interval_counts(counts, times=[1, 2, 3, 4], label="end", unit="week")
    s = datasets.interval_counts(counts, times=[0, 1, 2, 3], label="start", unit="week")
    np.testing.assert_array_equal(e.ts, s.ts)
    assert e.t0 == s.t0 == 0.0
    # A record of its own with a given width.
    one = datasets.interval_counts([5], times=[3.0], label="start", width=2.0)
    assert (one.t0, one.ts.tolist()) == (3.0, [5.0])


@pytest.mark.parametrize("kwargs, match", [
    ({"times": [0, 1, 3], "label": "start"}, "not equally spaced"),
    ({"times": [0, 1, 3], "label": "start", "width": 1.0}, "gap"),
    ({"times": [0, 1, 1.5], "label": "start", "width": 1.0}, "overlap"),
    ({"times": [0, 1, 2], "label": "middle"}, "label"),
    ({"times": [0, 2, 1], "label": "end"}, "strictly increasing"),
    ({"label": "end"}, "exactly one"),
    ({"times": [0, 1, 2], "dates": ["2007-01-01"] * 3, "label": "end"}, "exactly one"),
    ({"dates": ["2007-01-01", "2007-13-01", "2007-01-03"], "label": "end"}, r"dates\[1\]"),
    ({"times": [0, 1, 2], "label": "end", "unit": "month"}, "unit"),
    ({"times": [0, 1], "label": "end"}, "same non-zero length"),
    ({"times": [0, 1, 2], "label": "end", "width": -1.0}, "width"),
])
def test_interval_counts_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.interval_counts([1, 2, 3], **kwargs)


def test_interval_counts_bad_counts():
    with pytest.raises(ValueError, match="missing count"):
        datasets.interval_counts([1, float("nan"), 3], times=[0, 1, 2], label="end")
    with pytest.raises(ValueError, match=">= 0"):
        datasets.interval_counts([1, -1, 3], times=[0, 1, 2], label="end")
    with pytest.raises(TypeError, match="counts"):
        datasets.interval_counts(["a", "b"], times=[0, 1], label="end")
    with pytest.raises(ValueError, match="One record"):
        datasets.interval_counts([1], times=[0], label="end")
