"""Distillation as a task for the training engine (train/engine.py): classification's batches, evaluation and
best-weights saving (train/classify.py's ClassifyTask), with the loss against the teacher's probabilities.

A row of the distillation set is a labelled training row (label >= 0), an augmented copy or an unlabelled text
(label -1); `Batch.indices` are its rows, so a batch's teacher probabilities are a gather from one (N, C)
tensor, and exact resume needs nothing beyond classification's (the rows and the cache do not change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from textcls.config import Config
from textcls.data.pipeline import PreparedData
from textcls.train.classify import ClassifyTask

NO_LABEL = -1


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                 temperature: float, class_weights: Optional[torch.Tensor] = None,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """The mean over rows of: (1 - alpha) * CE(label) + alpha * T^2 * KL(teacher_T || student_T) for a labelled
    row; T^2 * KL(teacher_T || student_T) for a row without a label (NO_LABEL), which has only the teacher.

    (B, C) student logits; (B, C) teacher probabilities at temperature 1, softened here as softmax(log p / T);
    (B,) labels. T^2 keeps the soft term's gradient on the scale of the hard one's (Hinton et al. 2015)."""
    logits = logits.float()
    soft_teacher = torch.softmax(torch.log(teacher.float().clamp_min(1e-12)) / temperature, -1)  # (B, C)
    log_student = torch.log_softmax(logits / temperature, -1)
    kl = (torch.xlogy(soft_teacher, soft_teacher) - soft_teacher * log_student).sum(-1) * temperature ** 2  # (B,)
    labelled = labels != NO_LABEL
    ce = F.cross_entropy(logits, labels.clamp_min(0), weight=class_weights, reduction="none",
                         label_smoothing=label_smoothing)  # (B,); ignored where there is no label
    return torch.where(labelled, (1 - alpha) * ce + alpha * kl, kl).mean()


class ProjectedStudent(torch.nn.Module):
    """The student with learned projections to the teacher's width, for `distill.match_hidden` (its pooled vector)
    and `distill.match_layers` (the mean states of the student layers `depths`, 1-based, through one projection
    shared by the layers, where the widths differ). forward returns ((B, C) logits, (B, H_teacher) projected
    pooled vectors or None, (B, len(depths), H_teacher) layer means or None). The engine trains and checkpoints
    it whole; the run's best weights are the student's alone (`student.state_dict()`)."""

    def __init__(self, student: torch.nn.Module, teacher_width: int, pooled: bool = True,
                 depths: Sequence[int] = ()):
        super().__init__()
        self.student = student
        self.depths = list(depths)
        width = student.cfg.hidden_size
        self.project = torch.nn.Linear(width, teacher_width) if pooled else None
        self.project_layers = torch.nn.Linear(width, teacher_width) if depths and width != teacher_width else None

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        pooled, means = self.student.features_and_means(input_ids, attention_mask, token_type_ids, self.depths)
        logits = self.student.head(self.student.head_dropout(pooled))
        if means is not None and self.project_layers is not None:
            means = self.project_layers(means)
        return logits, None if self.project is None else self.project(pooled), means


def layer_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The squared distance between L2-normalized vectors (Sun et al. 2019), summed over the width and averaged
    over rows and layers: (B, P, H) student states against the teacher's (B, P, H), already normalized."""
    return (F.normalize(student.float(), dim=-1) - teacher).pow(2).sum(-1).mean()


class DistillTask(ClassifyTask):
    """ClassifyTask on the distillation set (`data.train`: labelled rows, augmented copies, unlabelled texts),
    with `distill_loss` against `teacher_probs` ((N, C), one row per row of `data.train`, in `data.labels` order),
    plus `hidden_weight` x the MSE of the projected pooled vectors against `teacher_pooled` ((N, H)) and
    `layer_weight` x `layer_distance` of the student's matched layers against `teacher_layers` ((N, P, H)) when
    given (the engine's model is then a ProjectedStudent).
    The best weights' run.json records the teacher (`teacher: {path, sha256}`)."""

    def __init__(self, cfg: Config, run_dir: Path, data: PreparedData, device: torch.device,
                 eval_model: torch.nn.Module, teacher_probs: np.ndarray, teacher: dict,
                 teacher_pooled: Optional[np.ndarray] = None, teacher_layers: Optional[np.ndarray] = None):
        super().__init__(cfg, run_dir, data, device, eval_model, None, {"teacher": teacher})
        if teacher_probs.shape != (len(data.train), len(data.labels)):
            raise ValueError(f"teacher probabilities {teacher_probs.shape} for {len(data.train)} rows and "
                             f"{len(data.labels)} labels")
        self.teacher_probs = torch.from_numpy(teacher_probs).to(device)
        self.teacher_pooled = None if teacher_pooled is None else torch.from_numpy(teacher_pooled).to(device)
        self.teacher_layers = None if teacher_layers is None else F.normalize(
            torch.from_numpy(teacher_layers).to(device), dim=-1)
        self.projected = teacher_pooled is not None or teacher_layers is not None  # the model is a ProjectedStudent
        k = cfg.distill
        self.alpha, self.temperature = k.alpha, k.temperature
        self.hidden_weight, self.layer_weight = k.hidden_weight, k.layer_weight

    def loss(self, forward: Callable, batch) -> torch.Tensor:
        out = forward(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        logits, projected, means = out if self.projected else (out, None, None)
        rows = torch.from_numpy(np.asarray(batch.indices, dtype=np.int64)).to(self.teacher_probs.device)
        loss = distill_loss(logits, self.teacher_probs[rows], batch.labels, self.alpha, self.temperature,
                            self.class_weights, self.t.label_smoothing)
        if projected is not None:  # (B, H_teacher) against the teacher's pooled vectors
            loss = loss + self.hidden_weight * F.mse_loss(projected.float(), self.teacher_pooled[rows])
        if means is not None:  # (B, P, H_teacher) against the teacher's layers' mean states
            loss = loss + self.layer_weight * layer_distance(means, self.teacher_layers[rows])
        return loss
