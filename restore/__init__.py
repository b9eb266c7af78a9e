"""restore: image restoration research platform (PS, UPS, tasks) on Accelerate."""

__version__ = "0.1.0"
