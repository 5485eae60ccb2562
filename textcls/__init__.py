"""textcls: a command-line text-classification trainer with a shareable transformer encoder."""

__version__ = "0.1.0"
