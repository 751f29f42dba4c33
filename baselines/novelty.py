"""Novelty: an anomaly detector fitted on the training file, kept in the baseline as JSON.

Per-feature statistics miss a change of the *joint* distribution whose
marginals stay put: two features that moved together in training and move
apart in serving (a correlation flip), a mix of values that never occurred
together. The baseline's novelty model is River's
:class:`~river.anomaly.HalfSpaceTrees` (HST) fitted on the training file's
numeric features; a serving window's *outlier share* — the share of its
events the model scores above the training data's 99th percentile — is
compared with the ~1 % the training data had (see
:class:`~driftline.streams.feature_windows.NoveltyWindow`).

Fitting (:func:`fit_novelty`, called by :func:`~.build.build_baseline`)
----------------------------------------------------------------------
* **Rows**: :class:`RowSample` keeps a uniform random sample of at most
  ``fit_rows + calibration_rows`` (2,048 + 8,192) rows during the builder's
  first pass, so a file larger than memory still works. The first
  ``fit_rows`` of the sample (a random order) train the trees, the others are
  held out for calibration; a file with fewer rows gives a quarter of them to
  training, the rest to calibration. Fewer than ``min_rows`` (1,000) rows:
  no model.
* **Features**: every numeric feature whose training ``min < max`` (a
  constant feature cannot be scaled; a serving value away from it is a range
  anomaly anyway). Each value is scaled to ``[0, 1]`` by the feature's
  training min and max (HST assumes that range) and clipped to it, so a
  serving value beyond the training range counts as the range's edge. A
  missing value (absent, null, not a number) takes the feature's training
  mean, in training and in serving alike.
* **Trees**: ``n_trees = 20`` of ``height = 8``, seeded (``seed = 0``). HST
  scores a point by the masses of the *last completed window* of
  ``window_size`` points, so ``window_size`` is the number of training rows:
  they fill exactly one window, whose masses are the model. The window size
  does not change the cost of scoring, which scales with the trees and with
  the depth the walk reaches before a node's mass falls under
  ``0.1 × window_size`` (River's early stop: a taller tree adds state more
  than time). Why 20 trees: the splits are random, and with 10 the forest
  sometimes barely splits on the features that matter — on a flipped
  correlation of two features (plus an unrelated third), the outlier share
  of the flipped window ranged from 3 % to 53 % over 8 tree seeds, against
  17 % to 41 % with 20 (1 % expected in both).
* **Threshold**: the held-out rows are scored; the threshold is their
  ``quantile`` (0.99) score (``numpy``'s ``inverted_cdf``), and an event is
  an *outlier* when its score is strictly above it. How many held-out rows
  were outliers is stored with their number, and a window is tested against
  those counts. Scores are sums of integer masses, so they tie: the share
  strictly above the threshold can be under 1 % (0.4-1 % in the tests; even
  0 for one feature whose top scores all tie), and the stored count, not
  the nominal 1 %, is the expectation.

Storage: the trees, rebuilt
---------------------------
No pickle (a baseline is a user-editable document; unpickling it would run
code). HST trees are random splits drawn from the seed: River builds them on
the first ``learn_one`` from ``random.Random(seed)``, the sorted feature
names and their limits (all ``[0, 1]`` here), independently of the data.
What learning adds is one mass per node. The JSON keeps the parameters, the
seed, the scaling, and the masses of each tree in breadth-first order
(``2 ** (height + 1) - 1`` integers per tree; about 34 kB of JSON, 6 kB
gzipped, for 20 trees of height 8 and 2,048 training rows; rebuilding takes
some 60 ms). Loading rebuilds the trees with River
from the seed and checks them against ``trees_digest``, a SHA-256 of the
fitted trees' split features and thresholds: a River or Python whose trees
differ from the fitted ones is refused (:class:`~.model.BaselineError`),
never scored silently wrong.

Scoring is a NumPy walk of all the trees at once over a batch of rows that
mirrors River's ``HalfSpaceTrees.score_one`` (same walk, same early stop,
same normalization). Masses are integers, so every partial sum is exact in
floating point and the scores equal River's bit for bit (the tests check
that). About 3 µs per row in batches of 256, against some 30 µs per River
``score_one`` call (20 trees of height 8; measured on a busy core).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random(4000)
    >>> columns = {"x": x, "y": x + rng.normal(0, 0.05, 4000)}   # y follows x
    >>> model = fit_novelty(columns)
    >>> model.features, model.n_trees, model.height, model.window_size, model.calibration_rows
    (('x', 'y'), 20, 8, 1000, 3000)
    >>> model.calibration_outliers, round(model.expected_rate, 2)   # scores tie: a little under 1 %
    (25, 0.01)
    >>> model.is_outlier({"x": 0.1, "y": 0.1}), model.is_outlier({"x": 0.1, "y": 0.9})   # off the diagonal
    (False, True)
    >>> NoveltyModel.from_json(model.to_json()) == model
    True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .model import BaselineError
from .profile import as_number

if TYPE_CHECKING:
    from .model import NumericStats

__all__ = [
    "NOVELTY_METHOD",
    "NoveltyModel",
    "NoveltyOptions",
    "RowSample",
    "fit_novelty",
]

#: The ``method`` of a novelty model: River's Half-Space Trees.
NOVELTY_METHOD = "half_space_trees"


@dataclass(frozen=True)
class NoveltyOptions:
    """How the novelty model is fitted (see the module's *Fitting*).

    Parameters
    ----------
    n_trees, height
        Half-Space Trees' number of trees and height (a tree has
        ``2 ** (height + 1) - 1`` nodes).
    fit_rows
        Most training rows the trees learn (their window size).
    calibration_rows
        Most held-out rows the threshold is calibrated on.
    quantile
        The held-out score quantile above which an event is an outlier
        (0.99: about 1 % of training-like events are).
    min_rows
        Fewer sampled training rows than this give no model.
    seed
        Seed of the row sample and of the trees.

    Example:
        >>> NoveltyOptions().sample_rows
        10240
        >>> NoveltyOptions(quantile=1.5)
        Traceback (most recent call last):
        ...
        driftline.baselines.model.BaselineError: novelty quantile must be in (0, 1), not 1.5
    """

    n_trees: int = 20
    height: int = 8
    fit_rows: int = 2_048
    calibration_rows: int = 8_192
    quantile: float = 0.99
    min_rows: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n_trees", 1), ("height", 1), ("fit_rows", 10), ("calibration_rows", 10), ("min_rows", 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BaselineError(f"novelty {name} must be an integer >= {low}, not {value!r}")
        if self.height > 16:
            raise BaselineError(f"novelty height must be at most 16, not {self.height}")
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, (int, float)) or not 0 < self.quantile < 1:
            raise BaselineError(f"novelty quantile must be in (0, 1), not {self.quantile!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise BaselineError(f"novelty seed must be an integer, not {self.seed!r}")

    @property
    def sample_rows(self) -> int:
        """Rows the builder's :class:`RowSample` keeps: ``fit_rows + calibration_rows``."""
        return self.fit_rows + self.calibration_rows


class RowSample:
    """A uniform random sample of at most ``size`` rows of a table read in column chunks, as numbers.

    Bottom-k sampling as :class:`~.profile.Reservoir`, but of whole rows:
    every row gets a random key from one seeded generator, in row order, and
    the sample is the ``size`` rows with the smallest keys — whatever the
    chunking. Each kept row keeps every column's value as a float, NaN where
    it is missing or not a number (:func:`~.profile.as_number`); a column
    first met in a later chunk is NaN in the rows kept before. Only rows that
    may enter the sample are converted (a few per chunk once it is full).

    Parameters
    ----------
    size
        The most rows kept.
    seed
        Seed of the keys.

    Example:
        >>> s = RowSample(size=3, seed=1).update({"a": ["1", "2", "x", "4"]}, 4, typed=False)
        >>> s = s.update({"a": ["5", "6"], "b": [1.5, None]}, 2, typed=False)
        >>> s.seen, len(s), sorted(s.names)
        (6, 3, ['a', 'b'])
        >>> s.columns(["a"])["a"].shape
        (3,)
    """

    def __init__(self, size: int = 10_240, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"a row sample holds at least 1 row, not {size}")
        self.size = size
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._keys = np.empty(0)
        self._values: dict[str, np.ndarray] = {}
        self._largest = 1.0
        self.seen = 0

    def update(self, columns: Mapping[str, Sequence[Any]], rows: int, typed: bool = True) -> RowSample:
        """Offer ``rows`` consecutive rows: ``columns`` maps a column to its ``rows`` values
        (a column absent from the chunk is missing in its rows). ``typed`` is
        ``False`` for CSV, whose values are text to parse."""
        keys = self._rng.random(rows)
        self.seen += rows
        if self._keys.size == self.size:
            chosen = np.flatnonzero(keys < self._largest)
        else:
            chosen = np.arange(rows)
        if chosen.size > self.size:
            chosen = chosen[np.argpartition(keys[chosen], self.size - 1)[: self.size]]
        if not chosen.size:
            return self
        old, new = self._keys.size, chosen.size
        merged_keys = np.concatenate((self._keys, keys[chosen]))
        picks = chosen.tolist()
        merged: dict[str, np.ndarray] = {}
        for name in dict.fromkeys([*self._values, *columns]):
            before = self._values.get(name)
            if before is None:
                before = np.full(old, np.nan)
            values = columns.get(name)
            after = np.full(new, np.nan) if values is None else _numbers([values[i] for i in picks], typed)
            merged[name] = np.concatenate((before, after))
        if merged_keys.size > self.size:
            kept = np.argpartition(merged_keys, self.size - 1)[: self.size]
            merged_keys = merged_keys[kept]
            merged = {name: values[kept] for name, values in merged.items()}
        if merged_keys.size == self.size:
            self._largest = float(merged_keys.max())
        self._keys, self._values = merged_keys, merged
        return self

    def __len__(self) -> int:
        return int(self._keys.size)

    @property
    def names(self) -> list[str]:
        """The columns met so far."""
        return list(self._values)

    def columns(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """The kept rows' values of ``names`` (NaN for a column never met), rows in key order (a random order)."""
        order = np.argsort(self._keys, kind="stable")
        return {name: (self._values[name][order] if name in self._values else np.full(order.size, np.nan))
                for name in names}


_PLAIN_NUMBERS = frozenset({float, int, type(None)})


def _numbers(values: list[Any], typed: bool) -> np.ndarray:
    """:func:`~.profile.as_number` of each value, with NumPy for the usual all-number (or CSV) batches."""
    if not typed or set(map(type, values)) <= _PLAIN_NUMBERS:
        try:
            out = np.array(values, dtype=np.float64)  # None becomes NaN; CSV text parses as float() does
        except (ValueError, TypeError, OverflowError):
            pass
        else:
            out[~np.isfinite(out)] = np.nan
            return out
    return np.fromiter((as_number(v, typed) for v in values), dtype=np.float64, count=len(values))


# -- the trees --------------------------------------------------------------------------------------


class _Forest:
    """Half-Space Trees as flat arrays (breadth-first node order), scored in NumPy batches.

    Node ``i``'s children are ``2i + 1`` and ``2i + 2``; branches are the
    first ``2 ** height - 1`` nodes.
    """

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, mass: np.ndarray, window_size: int) -> None:
        self.feature = feature  # (trees, branches) index into the sorted feature names
        self.threshold = threshold  # (trees, branches)
        self.mass = mass  # (trees, nodes) int64
        self.n_trees, self.branches = feature.shape
        self.nodes = mass.shape[1]
        self.height = int(round(math.log2(self.branches + 1)))
        self.window_size = window_size
        self.size_limit = 0.1 * window_size  # River's HalfSpaceTrees.size_limit
        self.max_score = self.n_trees * window_size * (2 ** (self.height + 1) - 1)  # River's _max_score
        self._feature, self._threshold, self._mass = feature.ravel(), threshold.ravel(), mass.ravel()

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores of rows ``x`` (``(n, features)``, already scaled), as River's ``score_one`` of each row.

        Every (row, tree) pair walks down from the root; a pair leaves the
        walk where River's stops (a node's mass under the size limit, after
        counting it), so the arrays shrink level by level."""
        n, d = x.shape
        trees = self.n_trees
        pair = np.arange(n * trees)  # row * trees + tree
        tree = np.tile(np.arange(trees), n)
        row_start = np.repeat(np.arange(n) * d, trees)
        node = np.zeros(n * trees, dtype=np.intp)  # breadth-first index within the tree
        total = np.zeros(n * trees, dtype=np.int64)
        values = x.ravel()
        weight = 1
        for _ in range(self.height):
            mass = self._mass[tree * self.nodes + node]
            total[pair] += mass * weight
            walking = mass >= self.size_limit
            if not walking.all():
                pair, tree, row_start, node = pair[walking], tree[walking], row_start[walking], node[walking]
                if not pair.size:
                    break
            branch = tree * self.branches + node
            right = ~(values[row_start + self._feature[branch]] < self._threshold[branch])
            node = 2 * node + 1 + right
            weight <<= 1
        else:
            total[pair] += self._mass[tree * self.nodes + node] * weight
        return 1 - total.reshape(n, trees).sum(axis=1) / self.max_score

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the split features and thresholds: what the seed must rebuild."""
        text = json.dumps([self.feature.tolist(), [[repr(float(t)) for t in row] for row in self.threshold]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _river_trees(n_features: int, n_trees: int, height: int, window_size: int, seed: int) -> Any:
    """An HST with its trees built by River from the seed (its masses are not used).

    River builds the trees on the first ``learn_one``, from the sorted names of
    that row's features; the names here are stand-ins sorting as the real
    ones do (the real ones are sorted too)."""
    from river.anomaly import HalfSpaceTrees

    hst = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
    hst.learn_one({i: 0.0 for i in range(n_features)})
    return hst


def _flatten(hst: Any, n_features: int, height: int, masses: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split features, thresholds and (reference) masses of a River HST, breadth first."""
    branches, nodes = 2**height - 1, 2 ** (height + 1) - 1
    feature = np.zeros((len(hst.trees), branches), dtype=np.intp)
    threshold = np.zeros((len(hst.trees), branches))
    mass = np.zeros((len(hst.trees), nodes), dtype=np.int64)
    for t, root in enumerate(hst.trees):
        queue = [root]
        for i in range(nodes):
            node = queue[i]
            if masses:
                mass[t, i] = node.r_mass
            if i < branches:
                if not 0 <= node.feature < n_features:
                    raise BaselineError(f"novelty tree {t} splits on an unknown feature {node.feature!r}")
                feature[t, i] = node.feature
                threshold[t, i] = node.threshold
                queue.extend(node.children)
    return feature, threshold, mass


# -- the model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoveltyModel:
    """A fitted Half-Space Trees model of the training rows, its scaling, and its outlier threshold.

    Parameters
    ----------
    features
        The numeric features it reads, sorted.
    low, high
        Each feature's training min and max: a value ``v`` is scaled to
        ``(v - low) / (high - low)``, clipped to ``[0, 1]``.
    mean
        Each feature's training mean, which stands in for a missing value.
    n_trees, height, window_size, seed
        The HST parameters (``window_size``: the training rows learned).
    masses
        Per tree, the reference mass of each node, breadth first.
    threshold
        Scores strictly above it are outliers.
    quantile
        The held-out score quantile the threshold is.
    calibration_rows, calibration_outliers
        Held-out rows scored for the threshold, and how many were outliers.
    trees_digest
        Digest of the fitted trees' splits; loading checks the trees the seed
        rebuilds against it.
    method
        :data:`NOVELTY_METHOD`, the only one.

    Raises
    ------
    BaselineError
        A field is malformed, or the seed rebuilds other trees than the fitted ones.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(3)
        >>> model = fit_novelty({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
        >>> scores = model.score_many(np.array([[0.0, 0.0], [3.5, -3.5]]))
        >>> bool(scores[0] < model.threshold < scores[1])
        True
        >>> model.score({"a": 0.0}) == model.score({"a": 0.0, "b": model.mean[1]})   # missing b: its mean
        True
    """

    features: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    n_trees: int
    height: int
    window_size: int
    seed: int
    masses: tuple[tuple[int, ...], ...] = field(repr=False)
    threshold: float
    quantile: float
    calibration_rows: int
    calibration_outliers: int
    trees_digest: str
    method: str = NOVELTY_METHOD
    _forest: _Forest = field(init=False, repr=False, compare=False)
    _fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def fail(message: str) -> BaselineError:
            return BaselineError(f"novelty: {message}")

        for name in ("features", "low", "high", "mean", "masses"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.method != NOVELTY_METHOD:
            raise fail(f"method must be {NOVELTY_METHOD!r}, not {self.method!r}")
        if not self.features or any(not isinstance(n, str) or not n for n in self.features):
            raise fail("features must be a non-empty list of feature names")
        if list(self.features) != sorted(set(self.features)):
            raise fail("features must be sorted and distinct")
        d = len(self.features)
        for name in ("low", "high", "mean"):
            values = getattr(self, name)
            if len(values) != d or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                       for v in values):
                raise fail(f"{name} must be {d} finite numbers, one per feature")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        for f, lo, hi in zip(self.features, self.low, self.high):
            if not lo < hi:
                raise fail(f"feature {f!r}: min {lo} must be below max {hi}")
        for name, low in (("n_trees", 1), ("height", 1), ("window_size", 1), ("calibration_rows", 1),
                          ("calibration_outliers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(f"{name} must be an integer >= {low}, not {value!r}")
        if self.height > 16:
            raise fail(f"height must be at most 16, not {self.height}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise fail(f"seed must be an integer, not {self.seed!r}")
        if self.calibration_outliers > self.calibration_rows:
            raise fail("calibration_outliers cannot exceed calibration_rows")
        for name in ("threshold", "quantile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise fail(f"{name} must be a number in [0, 1], not {value!r}")
        nodes = 2 ** (self.height + 1) - 1
        if len(self.masses) != self.n_trees:
            raise fail(f"masses must list {self.n_trees} trees, not {len(self.masses)}")
        masses = []
        for t, tree in enumerate(self.masses):
            if not isinstance(tree, (list, tuple)) or len(tree) != nodes or any(
                    isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in tree):
                raise fail(f"masses of tree {t} must be {nodes} integers >= 0")
            if tree[0] != self.window_size:
                raise fail(f"tree {t}'s root mass {tree[0]} is not the window size {self.window_size}")
            masses.append(tuple(tree))
        object.__setattr__(self, "masses", tuple(masses))
        hst = _river_trees(d, self.n_trees, self.height, self.window_size, self.seed)
        feature, threshold, _ = _flatten(hst, d, self.height, masses=False)
        forest = _Forest(feature, threshold, np.array(self.masses, dtype=np.int64), self.window_size)
        if forest.digest() != self.trees_digest:
            raise fail(f"the trees rebuilt from seed {self.seed} are not the fitted ones (digest {forest.digest()}, "
                       f"expected {self.trees_digest!r}): River or Python draws them differently here; rebuild the "
                       "baseline, or delete statistics.novelty to go without")
        object.__setattr__(self, "_forest", forest)
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_fingerprint", hashlib.sha256(text.encode()).hexdigest()[:16])

    @property
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the whole model's JSON: tells two models apart
        (:attr:`trees_digest` does not — it covers the splits only, which the seed fixes)."""
        return self._fingerprint

    @property
    def expected_rate(self) -> float:
        """The held-out rows' outlier share: what a window of training-like events should show (~1 - quantile)."""
        return self.calibration_outliers / self.calibration_rows

    def scale(self, rows: np.ndarray) -> np.ndarray:
        """Rows of raw values (``(n, features)``, NaN for missing) as the trees read them: missing
        values take the mean, then each is scaled by its feature's range and clipped to ``[0, 1]``."""
        x = np.array(rows, dtype=np.float64, ndmin=2)
        if x.shape[1] != len(self.features):
            raise ValueError(f"rows need {len(self.features)} values ({', '.join(self.features)}), not {x.shape[1]}")
        missing = ~np.isfinite(x)
        if missing.any():
            x[missing] = np.broadcast_to(np.asarray(self.mean), x.shape)[missing]
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.clip((x - low) / (high - low), 0.0, 1.0)

    def score_many(self, rows: np.ndarray) -> np.ndarray:
        """HST scores (0: normal, 1: most anomalous) of rows of raw values, columns in :attr:`features` order."""
        return self._forest.score(self.scale(rows))

    def row(self, values: Mapping[str, Any]) -> list[float]:
        """One event's values of :attr:`features` (NaN where missing or not a number)."""
        return [v if type(v) is float else _as_float(v) for v in map(values.get, self.features)]

    def score(self, values: Mapping[str, Any]) -> float:
        """The score of one event's numeric features (``features.numeric``)."""
        return float(self.score_many(np.array([self.row(values)]))[0])

    def is_outlier(self, values: Mapping[str, Any]) -> bool:
        """Whether one event's score is above :attr:`threshold`."""
        return self.score(values) > self.threshold

    def to_json(self) -> dict[str, Any]:
        """The model as a JSON object (``statistics.novelty`` of a baseline document)."""
        return {
            "type": "novelty",
            "method": self.method,
            "features": {name: {"min": lo, "max": hi, "mean": m}
                         for name, lo, hi, m in zip(self.features, self.low, self.high, self.mean)},
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "seed": self.seed,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "calibration": {"rows": self.calibration_rows, "outliers": self.calibration_outliers},
            "trees_digest": self.trees_digest,
            "masses": [list(tree) for tree in self.masses],
        }

    @classmethod
    def from_json(cls, obj: Any) -> NoveltyModel:
        """Read :meth:`to_json`'s object; raises :class:`~.model.BaselineError` naming what is wrong."""
        if not isinstance(obj, Mapping):
            raise BaselineError("novelty must be an object")
        unknown = set(obj) - {"type", "method", "features", "n_trees", "height", "window_size", "seed", "threshold",
                              "quantile", "calibration", "trees_digest", "masses"}
        if unknown:
            raise BaselineError(f"novelty has unknown fields: {', '.join(sorted(unknown))}")
        try:
            features = obj["features"]
            calibration = obj["calibration"]
            if not isinstance(features, Mapping) or not all(isinstance(f, Mapping) for f in features.values()):
                raise BaselineError("novelty: features must map each feature to its min, max and mean")
            names = sorted(features)
            return cls(
                features=tuple(names),
                low=tuple(features[n]["min"] for n in names),
                high=tuple(features[n]["max"] for n in names),
                mean=tuple(features[n]["mean"] for n in names),
                n_trees=obj["n_trees"],
                height=obj["height"],
                window_size=obj["window_size"],
                seed=obj["seed"],
                masses=tuple(obj["masses"]),
                threshold=obj["threshold"],
                quantile=obj["quantile"],
                calibration_rows=calibration["rows"],
                calibration_outliers=calibration["outliers"],
                trees_digest=str(obj["trees_digest"]),
                method=obj.get("method", NOVELTY_METHOD),
            )
        except (KeyError, TypeError) as exc:
            raise BaselineError(f"novelty lacks {exc}") from None


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def fit_novelty(columns: Mapping[str, Sequence[float] | np.ndarray], stats: Mapping[str, NumericStats] | None = None,
                options: NoveltyOptions | None = None) -> NoveltyModel | None:
    """Fit the novelty model on sampled training rows (see the module's *Fitting*).

    Parameters
    ----------
    columns
        Feature name → the sampled rows' values (NaN where missing), all of
        one length, rows in a random order (as :meth:`RowSample.columns` gives).
    stats
        The features' baseline statistics (their min, max and mean scale the
        values); by default the columns' own.
    options
        Trees, rows and quantile.

    Returns
    -------
    NoveltyModel or None
        None without a usable feature (numeric, ``min < max``) or with fewer
        than ``options.min_rows`` rows.

    Example:
        >>> import numpy as np
        >>> fit_novelty({"x": np.arange(500.0)}) is None   # fewer than min_rows
        True
        >>> fit_novelty({"x": np.ones(5000)}) is None        # constant: nothing to scale
        True
    """
    from river.anomaly import HalfSpaceTrees

    options = options or NoveltyOptions()
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    lengths = {a.size for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns must have one length, not {sorted(lengths)}")
    ranges: dict[str, tuple[float, float, float]] = {}
    for name in sorted(arrays):
        if stats is not None:
            s = stats.get(name)
            if s is None or not s.count:
                continue
            low, high, mean = float(s.min), float(s.max), float(s.mean)
        else:
            finite = arrays[name][np.isfinite(arrays[name])]
            if not finite.size:
                continue
            low, high, mean = float(finite.min()), float(finite.max()), float(finite.mean())
        if math.isfinite(low) and math.isfinite(high) and math.isfinite(mean) and low < high:
            ranges[name] = (low, high, min(max(mean, low), high))
    n = lengths.pop() if lengths else 0
    if not ranges or n < options.min_rows:
        return None
    names = tuple(ranges)
    fit = min(options.fit_rows, n // 4)
    calibrate = min(n - fit, options.calibration_rows)
    low, high, mean = (tuple(r[i] for r in ranges.values()) for i in range(3))
    raw = np.column_stack([arrays[name][: fit + calibrate] for name in names])
    scaled = np.clip((np.where(np.isfinite(raw), raw, np.asarray(mean)) - np.asarray(low))
                     / (np.asarray(high) - np.asarray(low)), 0.0, 1.0)

    hst = HalfSpaceTrees(n_trees=options.n_trees, height=options.height, window_size=fit, seed=options.seed)
    for row in scaled[:fit].tolist():
        hst.learn_one(dict(enumerate(row)))  # integer keys: sorted as the (sorted) names are
    feature, threshold, mass = _flatten(hst, len(names), options.height, masses=True)
    forest = _Forest(feature, threshold, mass, fit)
    scores = forest.score(scaled[fit:])
    cut = float(np.quantile(scores, options.quantile, method="inverted_cdf"))
    return NoveltyModel(
        features=names, low=low, high=high, mean=mean, n_trees=options.n_trees, height=options.height,
        window_size=fit, seed=options.seed, masses=tuple(tuple(int(m) for m in tree) for tree in mass.tolist()),
        threshold=cut, quantile=float(options.quantile), calibration_rows=int(scores.size),
        calibration_outliers=int((scores > cut).sum()), trees_digest=forest.digest(),
    )
