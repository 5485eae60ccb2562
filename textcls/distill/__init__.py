"""Knowledge distillation: `textcls distill TEACHER_RUN [CONFIG]` trains a small student on a teacher run's
probabilities (loop.py; the task on the training engine: task.py)."""

from textcls.distill.loop import DistillResult, distill

__all__ = ["DistillResult", "distill"]
