"""Figures. Each function takes results (tables, maps) and returns a matplotlib Figure;
none of them computes anything the library does not already return."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt  # noqa: E402
