"""Input checks shared by the library's public functions, the Config and notebook parameters.

Each check raises ValueError (a bad value) or TypeError (a value of the wrong kind) with a
message that names the argument, what it got and how to fix it, and returns the value
(converted where that is lossless) when it is fine. The library's boundary (models,
facnn.attribution, facnn.theory, facnn.removal) goes through these, so a bad input fails
the same way everywhere instead of as a deep torch traceback or a NaN.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

# torch is imported lazily: facnn.config (and notebooks' parameter cells) use the scalar
# checks without it.


# -- scalars ----------------------------------------------------------------------------

def _kind(value: Any) -> str:
    return type(value).__name__


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An int in [lo, hi] (either bound may be None). Refuses bools, floats with a fraction,
    and strings such as "1000" (write 1000 without quotes)."""
    if isinstance(value, str):
        raise TypeError(f"{name}={value!r} is a string; give an int without quotes, e.g. "
                        f"{name}={value.strip() if value.strip().lstrip('-').isdigit() else 3}")
    # ints, numpy integers and whole reals (3.0, 0-d tensors) pass, as an int
    if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or (
            isinstance(value, numbers.Real) and float(value).is_integer())):
        raise TypeError(f"{name}={value!r} ({_kind(value)}) must be an int, e.g. {name}="
                        f"{lo if lo is not None else 1}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}={value} must be {_range(lo, hi)}")
    return value


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number in [lo, hi] ((lo, ...) with lo_open, (..., hi) with hi_open).
    Refuses NaN, inf, bools and strings."""
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        hint = " without quotes" if isinstance(value, str) else ""
        raise TypeError(f"{name}={value!r} ({_kind(value)}) must be a number; give it{hint}, "
                        f"e.g. {name}=0.1")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be a finite number (not NaN or inf)")
    bad = ((lo is not None and (value <= lo if lo_open else value < lo))
           or (hi is not None and (value >= hi if hi_open else value > hi)))
    if bad:
        raise ValueError(f"{name}={value:g} must be {_range(lo, hi, lo_open, hi_open)}")
    return value


def check_fraction(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    return check_float(name, value, 0.0, 1.0)


def check_bool(name: str, value: Any) -> bool:
    """True or False. Refuses strings ("true", "maybe") and numbers other than 0 and 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str):
        raise TypeError(f"{name}={value!r} is a string; give True or False without quotes")
    raise TypeError(f"{name}={value!r} ({_kind(value)}) must be True or False")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of "
                         f"{', '.join(str(a) for a in allowed)}")
    return value


def check_str(name: str, value: Any, optional: bool = False) -> str | None:
    """A non-empty string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}={value!r} must be a non-empty string"
                        f"{' or None' if optional else ''}")
    return value


def check_increasing(name: str, values: Sequence[Any], lo: int = 1,
                     strict: bool = True) -> tuple[int, ...]:
    """A tuple of ints >= lo, increasing (strictly unless ``strict`` is False)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name}={values!r} must be a sequence of ints, e.g. {name}=(100, 150)")
    out = tuple(check_int(f"{name}[{i}]", v, lo) for i, v in enumerate(values))
    if any(b < a or (strict and b == a) for a, b in zip(out, out[1:])):
        raise ValueError(f"{name}={out} must be {'strictly ' if strict else ''}increasing, "
                         f"e.g. {name}=(100, 150)")
    return out


def check_batch_size(name: str, value: Any, optional: bool = True) -> int | None:
    """A positive int (None means the function's default, when ``optional``)."""
    if value is None and optional:
        return None
    return check_int(name, value, 1)


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


# -- tensors ------------------------------------------------------------------------------

def check_tensor(name: str, x: Any):
    import torch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(x)}; convert it with "
                        f"torch.as_tensor({name})")
    return x


def check_images(x: Any, name: str = "x"):
    """A non-empty float batch of images (B, 3, H, W), normalised with the dataset's stats."""
    import torch
    x = check_tensor(name, x)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch of images (B, 3, H, W) for {name}, got "
                         f"{tuple(x.shape)}; add a batch dimension with {name}[None] or "
                         f"convert to RGB")
    if x.shape[0] == 0 or min(x.shape[-2:]) == 0:
        raise ValueError(f"{name} is empty, shape {tuple(x.shape)}; pass at least one image")
    if not x.is_floating_point():
        raise TypeError(f"{name} has dtype {x.dtype}; expected float images normalised with the "
                        f"dataset's mean and std: use facnn.data.normalise({name})")
    if x.dtype != torch.get_default_dtype():   # the models' weights are (float32 unless set)
        raise TypeError(f"{name} has dtype {x.dtype} but facnn's models compute in "
                        f"{torch.get_default_dtype()}; convert it with {name}.float() (a float64 model "
                        f"wants torch.set_default_dtype(torch.float64))")
    return x


def check_labels(y: Any, n: int, num_classes: int | None = None, name: str = "labels"):
    """Integer class labels (n,), each in 0..num_classes-1 when the class count is known."""
    import torch
    y = check_tensor(name, y)
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name} must be (B,) = ({n},), one per image, got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} has dtype {y.dtype}; class labels are integers: use {name}.long()")
    if num_classes is not None and n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1} (the model has {num_classes} "
                         f"classes), got {int(y.min())}..{int(y.max())}")
    return y


def check_classes(classes: Any, batch: int, num_classes: int):
    """Which classes to explain: None (all), an int, a sequence of ints (the same for every
    image) or an integer tensor (B,) (one per image). Returns a LongTensor (B, C_sel) on the
    CPU. Refuses floats, bools, empty lists and classes outside 0..C-1."""
    import torch
    if classes is None:
        return torch.arange(num_classes).expand(batch, num_classes)
    if isinstance(classes, torch.Tensor) and classes.dim() == 1:
        if len(classes) != batch:
            raise ValueError(f"a class tensor gives one class per image: expected shape "
                             f"({batch},), got {tuple(classes.shape)}; pass a list for the "
                             f"same classes on every image")
        if classes.is_floating_point() or classes.dtype == torch.bool:
            raise TypeError(f"classes has dtype {classes.dtype}; class indices are integers: "
                            f"use classes.long()")
        sel = classes.long().cpu()[:, None]
    else:
        if isinstance(classes, torch.Tensor):
            if classes.dim() != 0:
                raise ValueError(f"classes must be an int, a list of ints or a tensor (B,), got "
                                 f"a tensor of shape {tuple(classes.shape)}")
            classes = classes.item()
        items = [classes] if not isinstance(classes, (list, tuple, range)) else list(classes)
        if not items:
            raise ValueError("classes is empty; pass None for all classes")
        items = [check_int("class", c) for c in items]
        sel = torch.tensor(items).expand(batch, len(items))
    bad = sel[(sel < 0) | (sel >= num_classes)]
    if len(bad):
        raise ValueError(f"class {int(bad[0])} is outside 0..{num_classes - 1}: the model has "
                         f"{num_classes} outputs")
    return sel


def check_model(model: Any, name: str = "model"):
    """A torch.nn.Module (a classifier: model(x) -> scores (B, C))."""
    from torch import nn
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {_kind(model)}; build one with "
                        f"facnn.build_model(...) or load one with facnn.checkpoint.load_trained(cfg)")
    return model


def require_features(model: Any, what: str) -> None:
    """``what`` needs an FA-CNN or Vanilla-CNN (a model with forward_features)."""
    check_model(model)
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{what} needs a model with forward_features (FA-CNN or Vanilla-CNN); "
                         f"{type(model).__name__} has none. For a ResNet use "
                         f"grad_cam(model, x, layer='layer4') (a named module)")


def check_layer(model: Any, layer: Any) -> int | str:
    """Resolve ``layer``: an int in 1..N (FA-CNN's X_L), a module name (any model), or None
    for the last layer (X_N, or a ResNet's last stage)."""
    check_model(model)
    if layer is None:
        if hasattr(model, "forward_features"):
            return int(model.depth)
        for name in ("layer4", "net.layer4"):
            try:
                model.get_submodule(name)
                return name
            except AttributeError:
                pass
        raise ValueError(f"{type(model).__name__} has no forward_features and no 'layer4': "
                         f"name the module to explain, e.g. layer='features.7'")
    if isinstance(layer, str):
        try:
            model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} has no module {layer!r}; see "
                             f"[n for n, _ in model.named_modules()]") from None
        return layer
    require_features(model, f"layer={layer}")
    n = int(model.depth)
    layer = check_int("layer", layer)
    if not 1 <= layer <= n:
        raise ValueError(f"layer {layer} is outside 1..{n}: layers count from 1 to N = {n}; "
                         f"use layer=None for the last")
    return layer


def check_columns(name: str, frame: Any, columns: Iterable[str]):
    """A pandas DataFrame holding ``columns``."""
    missing = [c for c in columns if not hasattr(frame, "columns") or c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {', '.join(missing)}; pass the per_seed "
                         f"table of a facnn.removal.BenchmarkResult")
    return frame
