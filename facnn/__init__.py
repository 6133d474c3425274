"""facnn: the reproducible companion to "End-to-end Feature Alignment: A Simple CNN with
Intrinsic Class Attribution" (FA-CNN, arXiv 2603.25798)."""
import importlib

# imported on first use: torch takes seconds to import, and `python -m facnn` must answer
# Ctrl-C (or --help) without a traceback while it loads
_FROM = {"Config": "config", "apply_overrides": "config", "preset": "config", "FACNN": "models",
         "Classifier": "models", "build_model": "models", "model_from_config": "models"}

__all__ = list(_FROM)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'facnn' has no attribute {name!r}") from None


def __dir__():
    return sorted([*globals(), *_FROM])
