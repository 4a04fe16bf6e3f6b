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
import math
from dataclasses import dataclass
from typing import Any, Literal

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
