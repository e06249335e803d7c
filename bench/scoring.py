"""Benchmark scoring: zero-shot classification and retrieval accuracy from similarity matrices (ties share credit)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def top1_credit(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Top-1 credit per row, with ties resolved as an unbiased random pick would be on average.

    A row earns ``1 / k`` when a correct candidate is among its ``k`` tied best scores (the expected
    accuracy of breaking the tie uniformly at random), so a constant representation scores chance
    exactly instead of favouring the first column.

    Args:
        scores: ``(rows, candidates)`` similarities, higher is more similar.
        correct: ``(rows, candidates)`` bool, True where the candidate is a right answer.

    Returns:
        ``(rows,)`` float64 credit in [0, 1].

    Raises:
        ValueError: shapes differ, no candidates, or a non-finite score.
    """
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    if s.ndim != 2 or s.shape != c.shape or s.shape[1] == 0:
        raise ValueError(f"scores {s.shape} and correct {c.shape} must be the same (rows, candidates>0) shape")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or Inf; a representation produced non-finite similarities")
    best = s.max(axis=1, keepdims=True)
    tol = 1e-9 * np.maximum(1.0, np.abs(best))
    tied = s >= best - tol
    return (tied & c).sum(axis=1) / tied.sum(axis=1)


def zero_shot_accuracy(similarity: np.ndarray, query_labels: Sequence[str],
                       prototype_labels: Sequence[str], classes: Sequence[str] | None = None) -> dict:
    """Zero-shot classification: each query takes the label of its most similar prototype.

    Args:
        similarity: ``(queries, prototypes)`` similarities.
        query_labels: True class of each query.
        prototype_labels: Class of each prototype (one or more prototypes per class).
        classes: Class order for the report; default: sorted labels.

    Returns:
        ``{"accuracy": mean over queries, "per_class": {class: accuracy over its queries},
        "balanced": mean of per-class accuracies, "chance": 1 / number of classes, "n": queries}``.

    Raises:
        ValueError: label counts that do not match the matrix, or a query class with no prototype.
    """
    q = np.asarray(query_labels)
    p = np.asarray(prototype_labels)
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.shape != (len(q), len(p)):
        raise ValueError(f"similarity has shape {sim.shape}, expected ({len(q)}, {len(p)}) from the labels")
    classes = list(classes) if classes is not None else sorted(set(p.tolist()))
    missing = sorted(set(q.tolist()) - set(p.tolist()))
    if missing:
        raise ValueError(f"query classes without a prototype: {missing}; prototypes cover {sorted(set(p.tolist()))}")
    credit = top1_credit(sim, q[:, None] == p[None, :])
    per_class = {c: float(credit[q == c].mean()) for c in classes if (q == c).any()}
    return {"accuracy": float(credit.mean()), "per_class": per_class,
            "balanced": float(np.mean(list(per_class.values()))), "chance": 1.0 / len(set(p.tolist())),
            "n": int(len(q))}


def retrieval_accuracy(similarity: np.ndarray, positive: Sequence[int] | np.ndarray) -> float:
    """Top-1 retrieval accuracy: the query's most similar candidate must be its positive.

    Args:
        similarity: ``(queries, candidates)`` similarities.
        positive: ``(queries,)`` index of each query's positive candidate.

    Returns:
        Mean credit in [0, 1]; chance is ``1 / candidates``.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    pos = np.asarray(positive, dtype=int)
    if sim.ndim != 2 or pos.shape != (sim.shape[0],):
        raise ValueError(f"positive has shape {pos.shape}; expected ({sim.shape[0]},) for similarity {sim.shape}")
    if ((pos < 0) | (pos >= sim.shape[1])).any():
        raise ValueError(f"positive indices must lie in [0, {sim.shape[1]}), got {pos.min()}..{pos.max()}")
    correct = np.zeros(sim.shape, dtype=bool)
    correct[np.arange(len(pos)), pos] = True
    return float(top1_credit(sim, correct).mean())


def retrieval_curve(similarity: np.ndarray, sizes: Sequence[int]) -> dict[int, float]:
    """Retrieval accuracy against retrieval-set size, positive in column 0, distractors after it.

    For size ``m`` each query is scored on its positive plus its first ``m - 1`` distractors.

    Args:
        similarity: ``(queries, 1 + distractors)`` similarities; column 0 is the positive.
        sizes: Retrieval-set sizes, each in ``[1, columns]``.

    Returns:
        Size -> accuracy.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    bad = [m for m in sizes if not 1 <= m <= sim.shape[1]]
    if bad:
        raise ValueError(f"retrieval-set sizes {bad} outside [1, {sim.shape[1]}]")
    return {int(m): retrieval_accuracy(sim[:, :m], np.zeros(len(sim), dtype=int)) for m in sizes}
