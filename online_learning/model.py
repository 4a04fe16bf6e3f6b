"""The online ranking model: a river pipeline learned one example at a time.

Every prediction is made *before* the example is learned (progressive
validation), so log loss and AUC measure the model on data it has not seen.

>>> model = RankingModel.create("logreg", seed=1)
>>> for _ in range(50):
...     model.learn({"similarity": 0.9, "position": 0.0}, clicked=True)
...     model.learn({"similarity": 0.1, "position": 0.0}, clicked=False)
>>> model.score({"similarity": 0.9, "position": 0.0}).probability > 0.5
True
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from river import compose, facto, linear_model, metrics, optim, utils

from online_learning.scaling import FlooredScaler

ModelKind = Literal["logreg", "fm"]


@dataclass(frozen=True, slots=True)
class Score:
    """A predicted click probability and the contributions to its logit."""

    probability: float
    logit: float
    contributions: dict[str, float]


def _pipeline(kind: ModelKind, seed: int) -> compose.Pipeline:
    if kind == "fm":
        classifier: Any = facto.FMClassifier(
            n_factors=4,
            weight_optimizer=optim.SGD(0.05),
            latent_optimizer=optim.SGD(0.02),
            l2_weight=1e-4,
            l2_latent=1e-4,
            seed=seed,
        )
    else:
        classifier = linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4, intercept_lr=0.05)
    return compose.Pipeline(FlooredScaler(), classifier)


RECENT_EXAMPLES = 500  # window of the recent progressive AUC


def _recent_auc() -> Any:
    """Progressive ROC AUC over the last ``RECENT_EXAMPLES`` examples: shows a model going bad late."""
    return utils.Rolling(metrics.ROCAUC, window_size=RECENT_EXAMPLES, n_thresholds=50)


class RankingModel:
    """A click model with progressive validation metrics."""

    def __init__(self, kind: ModelKind, pipeline: compose.Pipeline) -> None:
        self.kind = kind
        self.pipeline = pipeline
        self.log_loss = metrics.LogLoss()
        self.auc = metrics.ROCAUC(n_thresholds=50)
        self.recent_auc = _recent_auc()
        self.learned = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots pickled before recent_auc existed restore with a fresh one.
        self.__dict__.update(state)
        if "recent_auc" not in state:
            self.recent_auc = _recent_auc()

    @classmethod
    def create(cls, kind: ModelKind = "logreg", seed: int = 0) -> RankingModel:
        """A fresh, untrained model."""
        return cls(kind, _pipeline(kind, seed))

    def probability(self, features: dict[str, float]) -> float:
        """Predicted probability of a click."""
        return float(self.pipeline.predict_proba_one(dict(features)).get(True, 0.0))

    def learn(self, features: dict[str, float], clicked: bool, weight: float = 1.0) -> None:
        """Score the example for the metrics first, then learn it."""
        x = dict(features)  # river must never see (or keep) the caller's dict
        p = min(max(self.probability(x), 1e-7), 1 - 1e-7)
        self.log_loss.update(clicked, p)
        self.auc.update(clicked, {True: p, False: 1 - p})
        self.recent_auc.update(clicked, {True: p, False: 1 - p})
        self.pipeline.learn_one(x, clicked, w=weight)
        self.learned += 1

    def score(self, features: dict[str, float]) -> Score:
        """Probability and per-feature contributions to the logit."""
        x = dict(features)
        scaled = self.pipeline[next(iter(self.pipeline.steps))].transform_one(x)
        classifier = self.pipeline[list(self.pipeline.steps)[-1]]
        # The logit comes straight from the classifier (read-only use of river's
        # private dot): recovered from the probability it lost precision past
        # |15| and saturated at |27.6|, so the strongest candidates tied.
        raw_dot = classifier._raw_dot_one if self.kind == "logreg" else classifier._raw_dot
        logit = float(raw_dot(scaled))
        return Score(self.probability(x), logit, self._contributions(scaled, logit))

    def score_many(self, rows: Sequence[dict[str, float]]) -> list[Score]:
        """``[self.score(row) for row in rows]``, computed for all rows at once for "logreg".

        Rows may have different features; each gets the contributions of its own
        features plus "intercept", exactly as ``score`` gives them (up to float
        summation order). The FM falls back to ``score`` per row: its pairwise
        terms are computed by river's own per-row code, not reproduced here.
        """
        if self.kind != "logreg":
            return [self.score(row) for row in rows]
        names, columns, raw, present = _matrix(rows)
        classifier = self.pipeline[list(self.pipeline.steps)[-1]]
        weights = classifier._weights  # read-only use, as in _contributions
        intercept = float(classifier.intercept)
        # numpy warns where Python floats silently give inf or nan (huge inputs,
        # a nan weight); score() keeps those values, so keep them here too.
        with np.errstate(all="ignore"):
            scaled = _scale_many(self.pipeline[next(iter(self.pipeline.steps))], names, raw)
            # river's dot runs over the row's own features only: a feature missing
            # from a row adds nothing, even when its weight is nan (nan * 0 is nan).
            parts = np.where(present, np.array([weights.get(name, 0.0) for name in names]) * scaled, 0.0)
            logits = intercept + parts.sum(axis=1)
            probabilities = _river_sigmoid(logits)
        scores = []
        for row, js, part, logit, probability in zip(
            rows, columns, parts.tolist(), logits.tolist(), probabilities.tolist(), strict=True
        ):
            contributions = {name: part[j] for name, j in zip(row, js, strict=True)}
            contributions["intercept"] = intercept
            scores.append(Score(probability, logit, contributions))
        return scores

    def score_matrix(
        self, names: Sequence[str], raw: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
        """Logits of rows that all have every feature ``names`` (columns of ``raw``), with each feature's part.

        Returns ``(logits, parts, intercept)``: ``logits[i] == intercept +
        parts[i].sum()`` and equals ``score(dict(zip(names, raw[i]))).logit``;
        ``parts[i, j]`` is the contribution of ``names[j]``. The FM's pairwise
        terms have no per-feature split: its parts come from ``score`` per row.
        """
        if self.kind != "logreg":
            scores = [self.score(dict(zip(names, row, strict=True))) for row in raw.tolist()]
            parts = np.array([[s.contributions.get(name, 0.0) for name in names] for s in scores]).reshape(raw.shape)
            intercept = scores[0].contributions.get("intercept", 0.0) if scores else 0.0
            return np.array([s.logit for s in scores]), parts, intercept
        classifier = self.pipeline[list(self.pipeline.steps)[-1]]
        weights = classifier._weights  # read-only use, as in _contributions
        intercept = float(classifier.intercept)
        with np.errstate(all="ignore"):  # as in score_many
            scaled = _scale_many(self.pipeline[next(iter(self.pipeline.steps))], list(names), raw)
            parts = np.array([weights.get(name, 0.0) for name in names]) * scaled
            logits = intercept + parts.sum(axis=1)
        return logits, parts, intercept

    def _contributions(self, scaled: dict[str, float], logit: float) -> dict[str, float]:
        classifier = self.pipeline[list(self.pipeline.steps)[-1]]
        if self.kind == "logreg":
            weights = classifier._weights  # river keeps the weights there; read-only use
            parts = {name: float(weights.get(name, 0.0)) * float(value) for name, value in scaled.items()}
            parts["intercept"] = float(classifier.intercept)
            return parts
        # A factorization machine's pairwise terms have no per-feature split;
        # attribute the linear part per feature and the rest to "interactions".
        weights = classifier.weights
        parts = {name: float(weights.get(name, 0.0)) * float(value) for name, value in scaled.items()}
        parts["intercept"] = float(classifier.intercept)
        parts["interactions"] = logit - sum(parts.values())
        return parts

    def weights(self) -> dict[str, float]:
        """Linear weights by feature (the FM's linear part)."""
        classifier = self.pipeline[list(self.pipeline.steps)[-1]]
        raw = classifier._weights if self.kind == "logreg" else classifier.weights
        return {str(name): float(value) for name, value in dict(raw).items()}

    def healthy(self, min_auc: float = 0.4, min_examples_for_auc: int = 200) -> tuple[bool, str]:
        """False with a reason when the model must not be published."""
        values = [*self.weights().values()]
        if any(not math.isfinite(v) for v in values):
            return False, "non-finite weights"
        if self.learned >= min_examples_for_auc and self.auc.get() < min_auc:
            return False, f"progressive AUC {self.auc.get():.3f} below {min_auc}"
        return True, "ok"

    def clone(self) -> RankingModel:
        """A deep copy, safe to publish while this one keeps learning."""
        return copy.deepcopy(self)


def _matrix(
    rows: Sequence[dict[str, float]],
) -> tuple[list[str], list[list[int]], NDArray[np.float64], NDArray[np.bool_]]:
    """The rows as one matrix over the union of their features: names, each row's columns, values, and which are set."""
    names = list(dict.fromkeys(itertools.chain.from_iterable(rows)))  # the union, in first-seen order
    column = {name: j for j, name in enumerate(names)}
    columns = [[column[name] for name in row] for row in rows]
    raw = np.zeros((len(rows), len(names)))
    present = np.zeros(raw.shape, dtype=bool)
    at = (
        np.repeat(np.arange(len(rows)), [len(row) for row in rows]),
        np.array([j for js in columns for j in js], dtype=np.intp),  # intp: an empty index must be one too
    )
    raw[at] = [value for row in rows for value in row.values()]  # float(value), as transform_one does
    present[at] = True
    return names, columns, raw, present


def _scale_many(scaler: FlooredScaler, names: list[str], raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """``FlooredScaler.transform_one`` on every row of ``raw`` (columns ``names``), step for step."""
    # The statistics are read once per call, per feature; .get defaults as in transform_one.
    counts = np.array([scaler.counts.get(name, 0) for name in names], dtype=np.float64)
    means = np.array([scaler.means.get(name, 0.0) for name in names])
    m2 = np.array([scaler.m2.get(name, 0.0) for name in names])
    # Population deviation from two observations on, 0 before; the floor then applies to both.
    std = np.where(counts > 1, np.sqrt(m2 / np.maximum(counts, 1.0)), 0.0)
    z = (raw - means) / np.maximum(std, scaler.min_std)
    clipped = np.clip(z, -scaler.bound, scaler.bound)  # like min(max(z, -b), b), nan stays nan
    # A non-finite input, and any value of a feature never learned, is neutral.
    scaled: NDArray[np.float64] = np.where(np.isfinite(raw) & (counts > 0), clipped, 0.0)
    return scaled


def _river_sigmoid(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """river's ``utils.math.sigmoid`` (what LogisticRegression.predict_proba_one uses), elementwise."""
    # river saturates to exactly 0 and 1 beyond |30| (its ndarray path does not;
    # predict_proba_one takes the scalar one). nan falls through to nan in both.
    exact = 1.0 / (1.0 + np.exp(-logits))
    saturated: NDArray[np.float64] = np.where(logits < -30, 0.0, np.where(logits > 30, 1.0, exact))
    return saturated
