"""Bundled outbreak data sets: small, public, historical epidemic time series.

Each loader reads a CSV file shipped inside the package (``epinn/data_files/``, with the
source kept as ``#`` comment lines) and returns an immutable :class:`OutbreakData`. Only the
standard library and numpy are used; nothing is downloaded.

Each data set says what its series is (``observed``: prevalence, incidence per interval or
deaths per interval), the name under which :func:`epinn.observe` and
:func:`epinn.fit_parameters` read that series off a model (``observable``) and the smallest
built-in model that produces it (``model``). :meth:`OutbreakData.observation_times` and, for
your own series, :func:`interval_counts` turn dated or numbered records into the ``ts`` and
``t0`` of a fit, with the convention of :func:`epinn.observe`: counts per interval cover
:math:`(t_{k-1}, t_k]`, so ``ts`` are the interval ends and ``t0`` the start of the first.

=====================  ==============================  ====  ==========  =============  =====  ====
name                   what                            unit  observed    observable     model  N
=====================  ==============================  ====  ==========  =============  =====  ====
``boarding_school``    boys confined to bed, boarding  day   prevalence  ``I``          SIR    763
                       school, influenza 1978
``bombay_plague``      plague deaths per week, Bombay  week  deaths      ``deaths``     SIRD   --
                       1905-06
``ebola_kikwit``       Ebola onsets per day (and       day   incidence   ``incidence``  SEIR   --
                       deaths), Kikwit 1995
``zika_yap``           Zika cases per onset week, Yap  week  incidence   ``incidence``  SIR    7391
                       Main Islands 2007
``philadelphia_1918``  pneumonia + influenza deaths    day   deaths      ``deaths``     SIRD   --
                       per day, Philadelphia 1918
=====================  ==============================  ====  ==========  =============  =====  ====
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import io
import math
import types
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ObservationTimes",
    "OutbreakData",
    "interval_counts",
    "list_datasets",
    "load_dataset",
    "load_boarding_school",
    "load_bombay_plague",
    "load_ebola_kikwit",
    "load_zika_yap",
    "load_philadelphia_1918",
]

_TIME_UNITS = ("day", "week")
_OBSERVED = ("prevalence", "incidence", "deaths")
_DAYS = {"day": 1.0, "week": 7.0}
_LABELS = ("start", "end")
# What each kind of series is called in epinn.observe's vocabulary.
_OBSERVABLE = {"prevalence": "I", "incidence": "incidence", "deaths": "deaths"}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class OutbreakData:
    """One outbreak time series, as loaded from a bundled CSV file.

    Instances are immutable: the dataclass is frozen, every array is read-only and
    ``series`` is a read-only mapping. Convert to JAX with ``jnp.asarray(data.t)``.

    Attributes:
        name: Registry name, as accepted by :func:`load_dataset`.
        title: A short title, e.g. for a plot.
        t: Float array of observation times, in ``time_unit`` since the data set's origin
            (``t = 0``). Where the file has a ``day``/``week`` column ``t`` is that column
            (boarding school: day 1 is the first record and the usual initial state is at
            day 0; Bombay: weeks 1..31); otherwise ``t`` counts from the first record
            (``t[0] = 0``).
        counts: Float array, the main observed series (see ``observed``).
        series: Read-only mapping of every data column (float arrays; the Ebola
            ``reporting`` flag stays boolean). The time index column, if any, is in ``t``.
        dates: ISO dates (``"YYYY-MM-DD"``) of each record as a tuple, or ``None`` when the
            source gives no calendar dates.
        time_unit: ``"day"`` or ``"week"``.
        population: Population size ``N`` where the source states it, else ``None``.
        observed: What ``counts`` measures: ``"prevalence"`` (number currently ill),
            ``"incidence"`` (new cases per interval) or ``"deaths"`` (deaths per interval).
        description: One paragraph on what the data are.
        citation: The reference(s) to cite when using the data.
        source: The provenance comment lines of the bundled CSV file (without ``#``).
        origin: ISO date at ``t = 0``, or ``None`` when not known.
        y0: The usual initial state ``{"S": ..., "I": ..., "R": ...}`` at ``t = 0`` where the
            literature has a standard one (boarding school), else ``None``.
        model: The smallest built-in model (a class name in :mod:`epinn.compartmental`) that
            produces the series: ``"SIR"`` for prevalence or incidence, ``"SIRD"`` for
            deaths, ``"SEIR"`` for Ebola (a latent period of about a week).
        label: For counts per interval, which end of its interval each record's time and
            date name: ``"start"`` (Zika: the onset week's first day; a daily date: that
            day) or ``"end"`` (Bombay: week number *k* ends *k* weeks after the origin);
            ``None`` for prevalence (a count at the time itself).
        first_observed: Index of the first record that is an observation. Earlier records
            are not (Ebola: the zeros between the index case and 1995-03-01, when daily
            reporting began); :meth:`observation_times` starts there.

    The series as a model output is ``observable``, the name :func:`epinn.observe` and
    :func:`epinn.fit_parameters` use: ``"I"`` (prevalence), ``"incidence"`` (new infections
    per interval, times a reporting fraction) or ``"deaths"`` (the deaths flow per
    interval). Every interval is one ``time_unit`` long.
    """

    name: str
    title: str
    t: np.ndarray
    counts: np.ndarray
    series: Mapping[str, np.ndarray]
    dates: tuple[str, ...] | None
    time_unit: str
    population: int | None
    observed: str
    description: str
    citation: str
    source: str
    origin: str | None = None
    y0: Mapping[str, float] | None = None
    model: str = "SIR"
    label: str | None = None
    first_observed: int = 0

    @property
    def observable(self) -> str:
        """The series' name in :func:`epinn.observe`'s vocabulary (``"I"``, ``"incidence"``,
        ``"deaths"``)."""
        return _OBSERVABLE[self.observed]

    @property
    def what(self) -> str:
        """What ``counts`` is, in words, e.g. ``"incidence: new cases per week"``."""
        per = f"per {self.time_unit}"
        return {
            "prevalence": f"prevalence: number ill at each time ({self.time_unit}s)",
            "incidence": f"incidence: new cases {per}",
            "deaths": f"deaths {per}",
        }[self.observed]

    def observation_times(self, unit: str | None = None) -> ObservationTimes:
        r"""``ts``, ``t0`` and ``counts`` for a fit, with the interval convention.

        Counts per interval (incidence, deaths) cover :math:`(t_{k-1}, t_k]`: ``ts`` are
        the interval ends and ``t0`` the start of the first observed interval (built by
        :func:`interval_counts` from the records' labels, see ``label``). Prevalence is a
        count at each time: ``ts = t`` and ``t0`` is the origin ``0`` (where ``y0`` holds;
        boarding school). Records before ``first_observed`` are left out.

        Args:
            unit: ``"day"`` or ``"week"`` for the returned times; default ``time_unit``.
                Rates fitted on these times are per ``unit`` (pass the same
                ``time_unit=`` to :func:`epinn.fit_epidemic`).

        Returns:
            :class:`ObservationTimes` ``(ts, t0, counts, unit, origin)``.

        Examples:
            >>> from epinn.datasets import load_zika_yap
            >>> obs = load_zika_yap().observation_times()
            >>> obs.t0, obs.ts[:3], obs.unit      # onset week k covers (k, k + 1]
            (0.0, array([1., 2., 3.]), 'week')
            >>> load_zika_yap().observation_times("day").ts[:3]
            array([ 7., 14., 21.])
        """
        unit = self.time_unit if unit is None else unit
        _check_unit(unit)
        scale = _DAYS[self.time_unit] / _DAYS[unit]
        i = self.first_observed
        if self.label is None:
            return ObservationTimes(
                ts=_readonly(self.t[i:] * scale), t0=0.0, counts=self.counts[i:], unit=unit,
                origin=self.origin)
        out = interval_counts(self.counts[i:], times=self.t[i:] * scale, label=self.label,
                              width=scale, unit=unit)
        return out._replace(origin=self.origin)

    def __repr__(self) -> str:
        n = "?" if self.population is None else self.population
        span = f"{self.t[0]:g}..{self.t[-1]:g}" if len(self.t) else "empty"
        return (
            f"OutbreakData(name={self.name!r}, records={len(self.t)}, "
            f"t={span} {self.time_unit}s, observed={self.observed!r}, population={n})"
        )

    def to_csv(self, path: str | Path | None = None) -> str:
        """Write the data as CSV text, the source kept as ``#`` comment lines.

        Columns: ``date`` (when dates are known), the time column named after
        ``time_unit`` (holding ``t``), then every entry of ``series``.

        Args:
            path: Optional file to write; the text is returned either way.

        Returns:
            The CSV text.

        Examples:
            >>> from epinn.datasets import load_boarding_school
            >>> text = load_boarding_school().to_csv()
            >>> text.splitlines()[3:5]
            ['date,day,in_bed,convalescent', '1978-01-22,1,3,0']
        """
        out = io.StringIO()
        for line in self.source.splitlines():
            out.write(f"# {line}\n")
        writer = csv.writer(out, lineterminator="\n")
        header = (["date"] if self.dates is not None else []) + [self.time_unit]
        writer.writerow(header + list(self.series))
        for i in range(len(self.t)):
            row = [self.dates[i]] if self.dates is not None else []
            row.append(_fmt(self.t[i]))
            row.extend(_fmt(col[i]) for col in self.series.values())
            writer.writerow(row)
        text = out.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


class ObservationTimes(NamedTuple):
    r"""Observation times of a series, ready for a fit.

    Attributes:
        ts: Float array of observation times, in ``unit``: for counts per interval the
            interval ends (the count ``counts[k]`` covers :math:`(t_{k-1}, t_k]`, with
            :math:`t_{-1}` = ``t0``).
        t0: Start of the solve: the start of the first interval (or the time of the
            initial state for a prevalence series).
        counts: Float array, one count per entry of ``ts``.
        unit: ``"day"`` or ``"week"``, the unit of ``ts`` and ``t0`` (and of every rate
            fitted on them).
        origin: ISO date at time ``0`` where known, else ``None``.
    """

    ts: np.ndarray
    t0: float
    counts: np.ndarray
    unit: str
    origin: str | None = None


def _check_unit(unit: Any) -> str:
    if not isinstance(unit, str) or unit not in _DAYS:
        raise ValueError(f"`unit` must be one of {tuple(_DAYS)}; got {unit!r}.")
    return unit


def _as_date(value: Any, i: int) -> datetime.date:
    """One calendar date: ISO string, ``datetime.date``/``datetime`` or ``numpy.datetime64``."""
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[D]").item()
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise ValueError(f"`dates[{i}]` must be an ISO date 'YYYY-MM-DD', a datetime.date or a "
                     f"numpy.datetime64; got {value!r}.")


def _labels(times: Any, dates: Any, origin: Any, unit: str) -> tuple[np.ndarray, str | None]:
    """Record labels as numbers in ``unit`` (dates: since ``origin``) and the origin date."""
    if (times is None) == (dates is None):
        raise ValueError("Give exactly one of `times` (numbers) or `dates` (calendar dates).")
    if times is not None:
        if origin is not None:
            origin = _as_date(origin, 0).isoformat()
        t = np.asarray(times)
        if t.dtype.kind not in "iuf":
            raise TypeError(f"`times` must hold real numbers; got dtype {t.dtype}.")
        return t.astype(np.float64), origin
    if isinstance(dates, str) or not isinstance(dates, Sequence | np.ndarray):
        raise TypeError(f"`dates` must be a sequence of dates; got {type(dates).__name__}.")
    parsed = [_as_date(d, i) for i, d in enumerate(dates)]
    return np.array([d.toordinal() for d in parsed], dtype=np.float64), origin


def interval_counts(
    counts: Any,
    *,
    times: Any = None,
    dates: Any = None,
    label: str,
    width: float | None = None,
    unit: str = "day",
    origin: Any = None,
) -> ObservationTimes:
    r"""``ts`` and ``t0`` of counts per interval (weekly or daily counts, dated or numbered).

    epinn observes counts per interval over :math:`(t_{k-1}, t_k]` (:func:`epinn.observe`):
    ``ts`` holds the interval **ends** and ``t0`` the start of the first interval, where the
    solve starts. Records usually name their interval by its start (an onset week's first
    day, a day's date) or by its end (week ending, week number *k* of a series that starts
    at week 0); ``label`` says which. Intervals must be contiguous and of one ``width``:
    a gap (a missing week) or an overlap raises, because the count after a gap would be
    read as covering the gap too.

    .. math::

        \text{label="start"}: (t_{k-1}, t_k] = (s_k, s_k + w], \qquad
        \text{label="end"}: (t_{k-1}, t_k] = (e_k - w, e_k].

    Args:
        counts: Counts per interval, one per record (finite, non-negative).
        times: Record labels as numbers in ``unit`` (e.g. week numbers). Give this or
            ``dates``.
        dates: Record labels as calendar dates (ISO strings ``"YYYY-MM-DD"``,
            ``datetime.date`` or ``numpy.datetime64``); converted to ``unit`` since
            ``origin``.
        label: ``"start"`` or ``"end"``: which end of its interval each label names.
        width: Interval length in ``unit``; default the spacing of the labels, which must
            then be constant (daily dates: 1 day; weekly dates with ``unit="week"``: 1).
        unit: ``"day"`` or ``"week"``: the unit of the returned times, and so of every
            rate fitted on them.
        origin: With ``dates``, the date at time 0 (default: the start of the first
            interval, so ``t0 = 0``); with ``times``, only recorded.

    Returns:
        :class:`ObservationTimes` ``(ts, t0, counts, unit, origin)``.

    Raises:
        ValueError: neither or both of ``times``/``dates``, labels not strictly increasing,
            irregular spacing without ``width``, gaps or overlaps, bad counts, an unknown
            ``label`` or ``unit``.
        TypeError: non-numeric times or counts.

    Examples:
        Weekly cases labelled by the week's first day, in weeks and in days:

        >>> obs = interval_counts([0, 3, 5], dates=["2007-02-18", "2007-02-25",
        ...                       "2007-03-04"], label="start", unit="week")
        >>> obs.t0, obs.ts, obs.origin
        (0.0, array([1., 2., 3.]), '2007-02-18')
        >>> interval_counts([0, 3, 5], dates=["2007-02-18", "2007-02-25", "2007-03-04"],
        ...                 label="start").ts
        array([ 7., 14., 21.])

        Weekly deaths numbered 1, 2, ... (week *k* ends *k* weeks after the origin):

        >>> obs = interval_counts([4, 10, 15], times=[1, 2, 3], label="end", unit="week")
        >>> obs.t0, obs.ts
        (0.0, array([1., 2., 3.]))
    """
    if not isinstance(label, str) or label not in _LABELS:
        raise ValueError(f"`label` must be one of {_LABELS} (which end of its interval each "
                         f"record names); got {label!r}.")
    _check_unit(unit)
    t, origin_date = _labels(times, dates, origin, unit)
    c = np.asarray(counts)
    if c.dtype.kind not in "biuf":
        raise TypeError(f"`counts` must hold real numbers; got dtype {c.dtype}.")
    c = c.astype(np.float64)
    if t.ndim != 1 or c.shape != t.shape or t.size == 0:
        raise ValueError(f"`counts` ({c.shape}) and the labels ({t.shape}) must be 1-D of the "
                         "same non-zero length.")
    if not (np.all(np.isfinite(c)) and np.all(c >= 0)):
        i = int(np.flatnonzero(~(np.isfinite(c) & (c >= 0)))[0])
        raise ValueError(f"`counts` must be finite and >= 0; got {c[i]} at index {i} (a "
                         "missing count cannot be left out of counts per interval: cut the "
                         "series there).")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError("The record labels (`times`/`dates`) must be finite and strictly "
                         "increasing.")
    days = dates is not None
    if days:  # ordinal days -> unit
        t = t / _DAYS[unit]
    step = np.diff(t)
    if width is None:
        if step.size == 0:
            raise ValueError("One record: give its interval `width`.")
        if not np.allclose(step, step[0], rtol=1e-9, atol=0):
            raise ValueError(f"The records are not equally spaced (spacings {np.unique(step)} "
                             f"{unit}s): give `width` to say how long each interval is.")
        width = float(step[0])
    width = float(width)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"`width` must be a positive number of {unit}s; got {width}.")
    bad = np.flatnonzero(~np.isclose(step, width, rtol=1e-9, atol=0))
    if bad.size:
        k = int(bad[0])
        kind = "a gap" if step[k] > width else "an overlap"
        raise ValueError(
            f"Records {k} and {k + 1} are {step[k]:g} {unit}s apart, intervals {width:g} long: "
            f"{kind} (counts per interval must cover contiguous intervals). Fill missing "
            "intervals with their counts or fit the contiguous part only.")
    starts = t if label == "start" else t - width
    if days:
        first = origin_date if origin_date is not None else datetime.date.fromordinal(
            int(round(starts[0] * _DAYS[unit])))
        ref = _as_date(first, 0)
        shift = ref.toordinal() / _DAYS[unit]
        starts = starts - shift
        origin_date = ref.isoformat()
    ends = starts + width
    return ObservationTimes(ts=_readonly(ends), t0=float(starts[0]), counts=_readonly(c),
                            unit=unit, origin=origin_date)


def _fmt(value) -> str:
    """Format a cell: booleans as True/False, integral floats without a decimal point."""
    if isinstance(value, np.bool_ | bool):
        return str(bool(value))
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


# --- reading -------------------------------------------------------------------------


@functools.cache
def _read_csv(filename: str) -> tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Read a bundled CSV: (comment text, header, rows). Cached; everything immutable."""
    text = (resources.files("epinn") / "data_files" / filename).read_text(encoding="utf-8")
    lines = text.splitlines()
    comments = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    rows = list(csv.reader(body))
    header, data = tuple(rows[0]), tuple(tuple(r) for r in rows[1:])
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise ValueError(
                f"{filename}: row {i + 1} has {len(row)} fields, expected {len(header)}"
            )
    return "\n".join(comments), header, data


def _readonly(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


def _column(values: list[str]) -> np.ndarray:
    """Parse one column: ``True``/``False`` as bool, anything else as float64."""
    if set(values) <= {"True", "False"}:
        return _readonly(np.array([v == "True" for v in values], dtype=bool))
    return _readonly(np.array([float(v) for v in values], dtype=np.float64))


def _shift(date: str, days: float) -> str:
    return (datetime.date.fromisoformat(date) + datetime.timedelta(days=days)).isoformat()


def _build(
    *,
    name: str,
    title: str,
    filename: str,
    count_col: str,
    time_unit: str,
    observed: str,
    description: str,
    citation: str,
    population: int | None = None,
    time_col: str | None = None,
    date_col: str | None = None,
    columns: Mapping[str, str] | None = None,
    origin: str | None = None,
    y0: Mapping[str, float] | None = None,
    model: str = "SIR",
    label: str | None = None,
    first_observed: int = 0,
) -> OutbreakData:
    """Assemble an :class:`OutbreakData` from one bundled file.

    ``columns`` maps output series names to file columns (default: every column that is not
    the date or time column, under its own name). ``count_col`` is an output series name.
    """
    source, header, rows = _read_csv(filename)
    raw = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    step = 7.0 if time_unit == "week" else 1.0
    dates = tuple(raw[date_col]) if date_col is not None else None
    if time_col is not None:
        t = np.array([float(v) for v in raw[time_col]], dtype=np.float64)
    else:  # time since the first record
        assert dates is not None
        first = datetime.date.fromisoformat(dates[0])
        days = [(datetime.date.fromisoformat(d) - first).days for d in dates]
        t = np.array(days, dtype=np.float64) / step
    if origin is None and dates is not None:
        origin = _shift(dates[0], -t[0] * step)
    if dates is None and origin is not None:
        dates = tuple(_shift(origin, ti * step) for ti in t)
    if columns is None:
        columns = {h: h for h in header if h not in (time_col, date_col)}
    series = types.MappingProxyType({k: _column(raw[c]) for k, c in columns.items()})
    return OutbreakData(
        name=name,
        title=title,
        t=_readonly(t),
        counts=_readonly(series[count_col].astype(np.float64)),
        series=series,
        dates=dates,
        time_unit=time_unit,
        population=population,
        observed=observed,
        description=description,
        citation=citation,
        source=source,
        origin=origin,
        y0=None if y0 is None else types.MappingProxyType(dict(y0)),
        model=model,
        label=label,
        first_observed=first_observed,
    )


# --- boarding school -----------------------------------------------------------------

_BMJ_1978 = (
    'Anonymous (1978). "Influenza in a boarding school." British Medical Journal '
    "1(6112):587. doi:10.1136/bmj.1.6112.587"
)
_OUTBREAKS_PKG = (
    "Jombart T. et al. outbreaks: a collection of disease outbreak data (R package, "
    "reconverse/outbreaks)."
)
_BS_ORIGIN = "1978-01-21"  # day 0; the files state day 1 = 1978-01-22.
_BS_Y0 = {"S": 762.0, "I": 1.0, "R": 0.0}

# variant -> (file column of the in-bed series, extra series, citation of the digitisation)
_BS_VARIANTS: dict[str, tuple[str, dict[str, str], str]] = {
    "outbreaks": (
        "outbreaks_in_bed",
        {},
        "De Vries G., Hillen T., Lewis M., Mueller J., Schoenfisch B. (2006). A Course in "
        "Mathematical Biology, Chapter 9. SIAM. Via " + _OUTBREAKS_PKG,
    ),
    "pomp": (
        "pomp_bsflu_B",
        {"convalescent": "pomp_bsflu_C"},
        "King A.A., Nguyen D., Ionides E.L. (2016). Statistical inference for partially "
        "observed Markov processes via the R package pomp. J. Stat. Softw. 69(12). "
        "Data set bsflu.",
    ),
    "epimdr": (
        "epimdr_flu_cases",
        {},
        "Bjornstad O.N. (2018). Epidemics: Models and Data using R. Springer. "
        "R package epimdr, data set flu.",
    ),
    "benmaier": (
        "benmaier_digitised",
        {},
        "Maier B.F., boarding_school_SIR (EasyNData digitisation of the BMJ figure; "
        "non-integer values).",
    ),
}


def load_boarding_school(variant: str = "outbreaks") -> OutbreakData:
    r"""Influenza in an English boarding school, January-February 1978.

    Daily number of boys confined to bed (``counts``, a prevalence) over 14 days, out of
    :math:`N = 763` boys (512 fell ill). Day 1 is 1978-01-22 and ``t`` is the day number,
    so the usual set-up for an SIR fit starts at ``t = 0`` with
    ``y0 = {"S": 762, "I": 1, "R": 0}`` and observes :math:`I(t)` at days 1..14.

    The figure in the BMJ note was digitised several times and the copies differ slightly;
    ``variant`` picks one. The default, ``"outbreaks"``, is the series used most in the
    literature (3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4) and also has the
    ``convalescent`` series and calendar dates.

    Args:
        variant: Which digitisation: ``"outbreaks"`` (R package outbreaks, after De Vries et
            al. 2006), ``"pomp"`` (R package pomp ``bsflu``, with ``convalescent``),
            ``"epimdr"`` (Bjornstad's epimdr ``flu``) or ``"benmaier"`` (a non-integer
            digitisation).

    Returns:
        The data set; ``counts`` is the in-bed series of the chosen digitisation.

    Raises:
        ValueError: If ``variant`` is not one of the names above.

    Examples:
        >>> from epinn.datasets import load_boarding_school
        >>> data = load_boarding_school()
        >>> data.t[:3], data.counts[:3], data.population, dict(data.y0)
        (array([1., 2., 3.]), array([ 3.,  8., 26.]), 763, {'S': 762.0, 'I': 1.0, 'R': 0.0})
        >>> load_boarding_school("pomp").counts[:3]
        array([ 1.,  6., 26.])
    """
    if not isinstance(variant, str) or variant not in _BS_VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(_BS_VARIANTS)}; got {variant!r}.")
    common = dict(
        name="boarding_school",
        title="Influenza in a boarding school, England 1978",
        count_col="in_bed",
        time_unit="day",
        time_col="day",
        observed="prevalence",
        population=763,
        y0=_BS_Y0,
    )
    what = (
        "Influenza outbreak in an English boys' boarding school, "
        "January 1978: daily number of the 763 boys confined to bed (in_bed) "
    )
    if variant == "outbreaks":
        return _build(
            filename="boarding_school_influenza_1978.csv",
            date_col="date",
            description=what + "and convalescent, days 1..14 (day 1 = 1978-01-22); "
            "512 boys fell ill.",
            citation=_BMJ_1978 + "\n" + _BS_VARIANTS["outbreaks"][2],
            **common,
        )
    col, extra, cite = _BS_VARIANTS[variant]
    return _build(
        filename="boarding_school_influenza_1978_variants.csv",
        columns={"in_bed": col, **extra},
        origin=_BS_ORIGIN,
        description=what + f"as digitised in {variant!r}, days 1..14 (day 1 = 1978-01-22).",
        citation=_BMJ_1978 + "\n" + cite,
        **common,
    )


# --- other outbreaks -----------------------------------------------------------------


def load_bombay_plague() -> OutbreakData:
    """Weekly plague deaths in Bombay, December 1905 to July 1906 (31 weeks).

    The series Kermack and McKendrick (1927) fitted with their epidemic model. ``t`` is the
    week number 1..31; no calendar dates are recorded, and the digitisation's provenance is
    undocumented (read Bacaer 2012 for cautions, e.g. seasonality of the rat-flea cycle).

    Returns:
        The data set; ``counts`` are deaths per week.

    Examples:
        >>> from epinn.datasets import load_bombay_plague
        >>> data = load_bombay_plague()
        >>> len(data.t), data.time_unit, int(data.counts.max())
        (31, 'week', 925)
    """
    return _build(
        name="bombay_plague",
        title="Plague in Bombay, 1905-06",
        filename="bombay_plague_1905_06.csv",
        count_col="deaths",
        time_unit="week",
        time_col="week",
        observed="deaths",
        model="SIRD",
        label="end",
        description="Weekly plague deaths in Bombay, December 1905 - July 1906 (31 weeks), "
        "digitised from the figure of Kermack & McKendrick (1927).",
        citation=(
            "Kermack W.O., McKendrick A.G. (1927). A contribution to the mathematical theory "
            "of epidemics. Proc. R. Soc. Lond. A 115:700-721. doi:10.1098/rspa.1927.0118\n"
            "Bacaer N. (2012). The model of Kermack and McKendrick for the plague epidemic in "
            "Bombay and the type reproduction number with seasonality. J. Math. Biol. "
            "64:403-422. doi:10.1007/s00285-011-0417-5\n"
            "Data via the R package fitsir (B. Bolker), data set bombay."
        ),
    )


# Records before this index (1995-03-01, 54 days after the index case) are not observations.
_EBOLA_DAILY_FROM = 54


def load_ebola_kikwit() -> OutbreakData:
    """Ebola haemorrhagic fever in Kikwit, Democratic Republic of the Congo, 1995.

    Daily symptom onsets (``counts``, an incidence) and deaths from 1995-01-06 (the first
    case) to 1995-07-16; ``t`` is days since the first case. ``series["reporting"]`` is
    ``True`` on the index case's day and from 1995-03-01, when daily reporting was in place;
    the zeros in between are not observations of no cases.

    Returns:
        The data set; ``series`` holds ``onset``, ``deaths`` and ``reporting``.

    Examples:
        >>> from epinn.datasets import load_ebola_kikwit
        >>> data = load_ebola_kikwit()
        >>> data.dates[0], int(data.counts.sum()), int(data.series["deaths"].sum())
        ('1995-01-06', 292, 236)
    """
    return _build(
        name="ebola_kikwit",
        title="Ebola in Kikwit, DRC 1995",
        filename="ebola_kikwit_1995.csv",
        count_col="onset",
        time_unit="day",
        date_col="date",
        observed="incidence",
        model="SEIR",
        label="start",
        first_observed=_EBOLA_DAILY_FROM,
        description="Ebola outbreak in Kikwit, DRC, 1995: daily symptom onsets and deaths "
        "from the first case (1995-01-06) to 1995-07-16; daily reporting from 1995-03-01.",
        citation=(
            "Khan A.S. et al. (1999). The reemergence of Ebola hemorrhagic fever, Democratic "
            "Republic of the Congo, 1995. J. Infect. Dis. 179(Suppl 1):S76-S86. "
            "doi:10.1086/514306\n" + _OUTBREAKS_PKG
        ),
    )


def load_zika_yap() -> OutbreakData:
    """Zika virus outbreak on the Yap Main Islands, Micronesia, 2007.

    Weekly probable and confirmed cases by week of symptom onset (108 in total) in a
    population of 7391. ``t`` is weeks since the first week (starting 2007-02-18); ``dates``
    are the week starts.

    Returns:
        The data set; ``counts`` are cases per week.

    Examples:
        >>> from epinn.datasets import load_zika_yap
        >>> data = load_zika_yap()
        >>> int(data.counts.sum()), data.population, data.time_unit
        (108, 7391, 'week')
    """
    return _build(
        name="zika_yap",
        title="Zika on Yap, Micronesia 2007",
        filename="zika_yap_2007.csv",
        count_col="cases",
        time_unit="week",
        date_col="onset_week_start",
        observed="incidence",
        label="start",
        population=7391,
        description="Zika virus outbreak, Yap Main Islands (Federated States of Micronesia), "
        "2007: weekly probable + confirmed cases by onset week, 108 in total, population "
        "7391.",
        citation=(
            "Funk S. et al. (2016). Comparative analysis of dengue and Zika outbreaks reveals "
            "differences by setting and virus. PLoS Negl. Trop. Dis. 10(12):e0005173. "
            "doi:10.1371/journal.pntd.0005173\n" + _OUTBREAKS_PKG
        ),
    )


def load_philadelphia_1918() -> OutbreakData:
    """Daily pneumonia and influenza deaths in Philadelphia, September-December 1918.

    122 days from 1918-09-01; ``t`` is days since then. The original source and exact
    definition of the series are not documented by the package it comes from; use it as
    data only.

    Returns:
        The data set; ``counts`` are deaths per day (column ``pim``).

    Examples:
        >>> from epinn.datasets import load_philadelphia_1918
        >>> data = load_philadelphia_1918()
        >>> len(data.t), data.dates[int(data.counts.argmax())]
        (122, '1918-10-11')
    """
    return _build(
        name="philadelphia_1918",
        title="Influenza in Philadelphia, 1918",
        filename="philadelphia_influenza_1918.csv",
        count_col="pim",
        time_unit="day",
        date_col="date",
        observed="deaths",
        model="SIRD",
        label="start",
        description="1918 influenza pandemic, Philadelphia: daily pneumonia + influenza "
        "mortality (column pim), 1918-09-01 to 1918-12-31. Provenance undocumented.",
        citation="Data via the R package fitsir (B. Bolker), data set phila1918; the "
        "original source is not documented there.",
    )


# --- registry ------------------------------------------------------------------------

_LOADERS = {
    "boarding_school": load_boarding_school,
    "bombay_plague": load_bombay_plague,
    "ebola_kikwit": load_ebola_kikwit,
    "zika_yap": load_zika_yap,
    "philadelphia_1918": load_philadelphia_1918,
}


def list_datasets() -> list[str]:
    """Names of the bundled data sets, as accepted by :func:`load_dataset`.

    Returns:
        The names, in a fixed order.

    Examples:
        >>> from epinn.datasets import list_datasets
        >>> list_datasets()[:2]
        ['boarding_school', 'bombay_plague']
    """
    return list(_LOADERS)


def load_dataset(name: str, **kwargs) -> OutbreakData:
    """Load a bundled data set by name.

    Args:
        name: One of :func:`list_datasets`.
        **kwargs: Passed to the loader, e.g. ``variant="pomp"`` for ``"boarding_school"``.

    Returns:
        The data set.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If ``name`` is unknown (the message lists the valid names).

    Examples:
        >>> from epinn.datasets import load_dataset
        >>> load_dataset("zika_yap")  # doctest: +NORMALIZE_WHITESPACE
        OutbreakData(name='zika_yap', records=29, t=0..28 weeks, observed='incidence',
                     population=7391)
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string; got {type(name).__name__}.")
    if name not in _LOADERS:
        raise ValueError(f"`name` must be one of {list_datasets()}; got {name!r}.")
    return _LOADERS[name](**kwargs)
