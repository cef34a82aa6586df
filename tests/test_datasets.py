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
