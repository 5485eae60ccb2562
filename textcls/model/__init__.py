from textcls.model.classifier import TextClassifier
from textcls.model.encoder import block_schedules, depth_schedule

__all__ = ["TextClassifier", "block_schedules", "depth_schedule"]
