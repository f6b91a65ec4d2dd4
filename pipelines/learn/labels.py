"""Training with few labels among many paired windows (``--label-fraction F``).

Labs record far more synchronized video + IMU than they annotate. The D-CAT term needs no label,
only the source's window at the same time, so a transfer can use unlabelled training windows in
its alignment term. This module decides which training windows keep their label and builds the
training epochs around that:

* :func:`hide_labels`: with ``F < 1`` a seeded share of the training windows loses its label
  (``ShardSet.y`` set to -1 for them, in this process's index only; the shards are not touched).
  Per class, ``max(1, round(F * n_c))`` windows keep their label, drawn with the split's seed and
  fold, so every run of a split (a source, its out-of-fold copies, the target with each method
  and seed) sees the same labelled windows. A training window whose label was never known
  (``y = -1`` already) counts as unlabelled too. Validation and test keep every label.
* :func:`label_plan`: the labelled and unlabelled training windows and how many passes over the
  labelled ones make an epoch (``repeats = round(n_train / n_labelled)``: an epoch keeps the
  number of steps of the whole training part, whatever ``F``).
* :class:`LabelledEpochs`: one epoch = ``repeats`` shuffled passes over the labelled windows;
  with ``unlabelled`` windows (a transfer whose method has a transfer term), each labelled batch
  is joined by a batch of as many unlabelled windows (cycled), whose ``y`` is -1: they count in
  the transfer term only, never in the cross-entropy. ``idx`` of an unlabelled window is its
  position in ``unlabelled`` plus ``len(labelled)``, so a source cache built over
  ``labelled + unlabelled`` (in that order) is looked up as usual.

With ``F = 1`` and every window labelled nothing changes: the plain :class:`BlockDataset` is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.core.errors import TrainingError
from pipelines.learn.config import check_label_fraction
from pipelines.learn.data import BlockDataset, ShardSet


def hide_labels(shards: ShardSet, train_ids, fraction: float, seed: int, fold: int | None = None) -> np.ndarray:
    """Hide the labels of all but a seeded ``fraction`` of the training windows ``train_ids``
    (``shards.y`` -> -1 there); returns which of ``train_ids`` keep theirs ([n] bool)."""
    f = check_label_fraction(fraction)
    ids = np.asarray(train_ids, np.int64)
    y = shards.y[ids]
    keep = y >= 0
    if f >= 1.0:
        return keep
    rng = np.random.default_rng([int(seed), 0 if fold is None else int(fold) + 1, 0x1AB])
    chosen = np.zeros(len(ids), bool)
    for c in np.unique(y[keep]):
        pos = np.flatnonzero(y == c)
        k = max(1, int(round(f * len(pos))))
        chosen[rng.choice(pos, size=k, replace=False)] = True
    shards.y[ids[~chosen]] = -1
    return chosen


@dataclass
class LabelPlan:
    labelled: np.ndarray  # global ids of the training windows with a label
    unlabelled: np.ndarray  # global ids of those without
    repeats: int  # passes over ``labelled`` per epoch

    @property
    def fraction(self) -> float:
        n = len(self.labelled) + len(self.unlabelled)
        return len(self.labelled) / n if n else 1.0

    def record(self) -> dict:
        return {"labelled": int(len(self.labelled)), "unlabelled": int(len(self.unlabelled)),
                "labelled_fraction": round(self.fraction, 6), "labelled_passes_per_epoch": int(self.repeats)}


def label_plan(shards: ShardSet, train_ids, fraction: float, seed: int, fold: int | None = None) -> LabelPlan:
    """Hide labels (:func:`hide_labels`) and split ``train_ids`` into labelled and unlabelled windows."""
    ids = np.asarray(train_ids, np.int64)
    keep = hide_labels(shards, ids, fraction, seed, fold)
    lab, unl = ids[keep], ids[~keep]
    if len(lab) == 0:
        raise TrainingError(f"{shards.data_dir}: no labelled window in the training part; a transfer needs some "
                            "labelled windows for its cross-entropy")
    return LabelPlan(lab, unl, max(1, int(round(len(ids) / len(lab)))))


def check_world(plan: LabelPlan, world: int) -> None:
    """Unlabelled windows (or repeated labelled passes) are not split over torchrun processes yet."""
    if world > 1 and (len(plan.unlabelled) or plan.repeats > 1):
        raise TrainingError("--label-fraction below 1 (or training windows without a label) is not supported "
                            "under torchrun yet: train in one process")


class LabelledEpochs(torch.utils.data.IterableDataset):
    """Epochs of ``repeats`` passes over a labelled :class:`BlockDataset`, each batch joined (when
    ``unlabelled`` is given) by a batch of as many unlabelled windows; see the module docstring."""

    def __init__(self, labelled: BlockDataset, repeats: int, unlabelled: BlockDataset | None = None):
        super().__init__()
        self.lab, self.unl, self.repeats = labelled, unlabelled, max(1, int(repeats))
        self.offset = len(labelled.ids)
        self.epoch = 0

    @property
    def num_workers(self) -> int:
        return self.lab.num_workers

    @num_workers.setter
    def num_workers(self, n: int) -> None:
        self.lab.num_workers = int(n)
        if self.unl is not None:
            self.unl.num_workers = int(n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.repeats * len(self.lab)

    def _unlabelled(self):
        cycle = 0
        while True:
            self.unl.set_epoch(self.epoch * 1000 + cycle)
            got = False
            for b in self.unl:
                got = True
                yield b
            if not got:
                return
            cycle += 1

    def __iter__(self):
        more = self._unlabelled() if self.unl is not None and len(self.unl.ids) else None
        for k in range(self.repeats):
            self.lab.set_epoch(self.epoch * self.repeats + k)
            for b in self.lab:
                b.pop("part", None)
                if more is not None:
                    u = next(more, None)
                    if u is not None:
                        u.pop("part", None)
                        n = min(len(u["y"]), len(b["y"]))
                        u = {key: v[:n] for key, v in u.items()}
                        u["y"] = torch.full_like(u["y"], -1)
                        u["idx"] = u["idx"] + self.offset
                        b = {key: torch.cat([b[key], u[key]]) for key in b}
                yield b

    def close(self) -> None:
        self.lab.close()
        if self.unl is not None:
            self.unl.close()


def training_data(plan: LabelPlan, make: callable, with_unlabelled: bool):
    """The training dataset: a plain ``make(ids)`` when every window is labelled, else
    :class:`LabelledEpochs` over ``make(plan.labelled)`` (and ``make(plan.unlabelled)`` when
    ``with_unlabelled``)."""
    if len(plan.unlabelled) == 0 and plan.repeats == 1:
        return make(plan.labelled)
    unl = make(plan.unlabelled) if (with_unlabelled and len(plan.unlabelled)) else None
    return LabelledEpochs(make(plan.labelled), plan.repeats, unl)


__all__ = ["check_world", "hide_labels", "LabelPlan", "label_plan", "LabelledEpochs", "training_data"]
