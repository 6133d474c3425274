"""facnn: the reproducible companion to "End-to-end Feature Alignment: A Simple CNN with
Intrinsic Class Attribution" (FA-CNN, arXiv 2603.25798)."""
from .config import Config, apply_overrides, preset
from .models import FACNN, Classifier, build_model, model_from_config

__all__ = ["Config", "apply_overrides", "preset", "FACNN", "Classifier", "build_model",
           "model_from_config"]
__version__ = "0.1.0"
