"""Figures. Each function takes results (tables, maps) and returns a matplotlib Figure;
none of them computes anything the library does not already return.

Sized for the book's column: no figure is wider than ``MAX_WIDTH`` = 7.5 in, so a PNG at
dpi 110 is shown at ~0.9 of its size in a ~750 px column, and no text is set below
``SMALL`` = 9 pt (the rest follows matplotlib's rcParams). Titles are optional: the
book's captions carry them; a given title is wrapped to the figure's width.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
import numpy as np

MAX_WIDTH = 7.5     # inches
SMALL = 9           # points: the smallest text of any figure (panel titles of image grids)


def _wrap(text: str, width_in: float, size: float = SMALL) -> str:
    """Wrap each line of ``text`` to about the characters that fit in ``width_in`` inches
    at ``size`` pt (a character is ~0.55 em wide)."""
    chars = max(6, int(width_in * 72 / (0.55 * size)))
    return "\n".join(textwrap.fill(line, chars, break_long_words=False) or line
                     for line in str(text).split("\n"))


def _finish(fig, title: str | None = None, **pad):
    """``fig`` with ``title`` wrapped to its width, laid out tight (with ``pad``) unless its
    layout is constrained."""
    if title:
        size = plt.rcParams["figure.titlesize"]
        pts = size if isinstance(size, (int, float)) else 13
        fig.suptitle(_wrap(title, fig.get_figwidth() * 0.95, pts))
    if not fig.get_constrained_layout():
        fig.tight_layout(**pad)
    return fig


def _legend(fig, ncol: int, loc: str = "outside lower center") -> None:
    """One legend for all panels of ``fig``, an entry per label (its first artist); none when
    nothing is labelled."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc=loc, ncol=ncol, frameon=False)


def _panel(ax, image, m=None, title: str | None = None, panel_in: float | None = None):
    """An image (uint8, (3, H, W)); framed, with a saliency map laid over it, when ``m`` is
    given (stretched to [0, 1] and to the image). The title is wrapped to ``panel_in`` inches."""
    image = np.asarray(image)
    ax.imshow(image.transpose(1, 2, 0))
    if m is None:
        ax.axis("off")
    else:
        m = np.asarray(m, float)
        lo, hi = np.nanmin(m), np.nanmax(m)
        h, w = image.shape[-2:]
        ax.imshow((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m), cmap="jet", alpha=0.55,
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(_wrap(title, panel_in) if panel_in else title, fontsize=SMALL)


def _strip(axes, image, maps) -> None:
    """Along ``axes``: the image, then each map at its layer's own resolution and colour scale,
    titled "image", "L1", "L2", ...; with no image, its panel is empty and nothing is titled."""
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    if image is None:
        axes[0].axis("off")
    else:
        axes[0].imshow(np.asarray(image).transpose(1, 2, 0))
        axes[0].set_title("image")
    for i, m in enumerate(maps, 1):
        axes[i].imshow(np.asarray(m.detach().float() if hasattr(m, "detach") else m, float),
                       cmap="jet", interpolation="nearest")
        if image is not None:
            axes[i].set_title(f"L{i}")


def _strip_layers(n: int, most: int = 10) -> list[int]:
    """At most ``most`` of the layers 1..n, evenly spaced and ending at n."""
    if n <= most:
        return list(range(1, n + 1))
    step = math.ceil(n / most)
    return list(range(n % step or step, n + 1, step))


def _forest(ax, rows, labels, styles, ms, **tick) -> None:
    """A forest plot's rows, top down, from dicts with "ours", "ci95" ((lo, hi) or None),
    "threshold" and "paper": ours with its interval as an error bar, the paper's value as a
    cross, the threshold as a grey tick. ``styles``: per row (colour, legend entry of ours,
    text at the left edge when ours is missing); ``ms``: the marker sizes of the three."""
    for y, (r, (colour, key, missing)) in enumerate(zip(rows, styles)):
        ours, ci = r.get("ours"), r.get("ci95")
        if _number(ours):
            err = [[ours - ci[0]], [ci[1] - ours]] if hasattr(ci, "__len__") and len(ci) == 2 else None
            ax.errorbar([ours], [y], xerr=err, fmt="o", color=colour, capsize=3, ms=ms[0], zorder=3,
                        label=key)
        else:   # at the axes' left edge (x in axes units), where no paper cross sits
            ax.text(0.01, y, missing, va="center", fontsize=SMALL, color="0.4",
                    transform=ax.get_yaxis_transform())
        for field, marker, size, tint, z in (("threshold", "|", ms[1], "0.55", 2),
                                             ("paper", "x", ms[2], "k", 4)):
            if _number(r.get(field)):
                ax.plot([r[field]], [y], marker=marker, ms=size, mew=2, color=tint, ls="none",
                        zorder=z, label=field)
    ax.set_yticks(range(len(rows)), labels, **tick)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)


def _number(x) -> bool:
    try:
        return x is not None and not math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "\u2026"


REMOVAL_STYLE = {  # method -> (label, colour, line width, marker)
    # at the last layer FA-CNN and Grad-CAM rank pixels identically (Theorem 1), so their
    # curves coincide: FA-CNN is drawn wide underneath, Grad-CAM thin on top
    "fa-cnn": ("FA-CNN", "tab:red", 4.0, None), "grad-cam": ("Grad-CAM", "tab:blue", 1.3, "o"),
    "rise": ("RISE", "tab:green", 1.5, "o"), "k-occ": ("K-OCC", "tab:orange", 1.5, "o"),
    "random": ("RAND", "tab:gray", 1.5, "o"),
}
ORDER_TITLE = {"lerf": "LeRF (least relevant first)", "morf": "MoRF (most relevant first)"}


def removal_curves(table, layers=None, orders=None, methods=None, title: str | None = None):
    """Figure 4 of the paper: top-1 accuracy against the fraction of pixels removed.

    ``table`` is ``run_benchmark(...).table`` (or the result itself, or a loaded
    ``curves.csv``). Rows of panels are removal orders, columns are FA-CNN layers (last
    layer first, as the paper's top panel is layer 24). Methods without a layer (RISE,
    K-OCC, RAND) are drawn in every panel; RAND's band is mean +- one std over seeds.
    """
    t = getattr(table, "table", table)
    orders = list(orders or [o for o in ("lerf", "morf") if o in set(t["order"])])
    layers = list(layers or sorted({int(v) for v in t["layer"].dropna()}, reverse=True) or [None])
    methods = list(methods or dict.fromkeys(t["method"]))
    width = min(MAX_WIDTH, 3.6 * len(layers))
    fig, axes = plt.subplots(len(orders), len(layers), figsize=(width, 3.0 * len(orders)),
                             sharex=True, sharey=True, squeeze=False)
    for i, order in enumerate(orders):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            for method in methods:
                rows = t[(t["method"] == method) & (t["order"] == order)]
                on_layer = rows[rows["layer"] == layer] if layer is not None else rows.iloc[:0]
                _removal_line(ax, on_layer if len(on_layer) else rows[rows["layer"].isna()], method)
            head = _wrap(ORDER_TITLE.get(order, order), 0.9 * width / len(layers), 10)
            ax.set_title(head + (f"\nlayer {layer}" if layer else ""), fontsize=10)
            ax.grid(alpha=0.3)
    plt.setp(axes[-1], xlabel="fraction removed")
    plt.setp(axes[:, 0], ylabel="top-1 accuracy")
    axes[0, -1].legend(loc="best")
    return _finish(fig, title)


def _removal_line(ax, rows, method: str) -> None:
    if not len(rows):
        return
    label, colour, lw, marker = REMOVAL_STYLE.get(method, (method, None, 1.5, "o"))
    rows = rows.sort_values("fraction")
    x, y = rows["fraction"].to_numpy(float), rows["accuracy"].to_numpy(float)
    ax.plot(x, y, marker=marker, ms=3, lw=lw, color=colour, label=label,
            ls="--" if method == "random" else "-", alpha=0.6 if lw > 2 else 1.0)
    if "accuracy_std" in rows and rows["accuracy_std"].notna().any():
        s = rows["accuracy_std"].fillna(0).to_numpy(float)
        ax.fill_between(x, y - s, y + s, color=colour, alpha=0.2, lw=0)


def learning_curves(histories, title: str | None = None):
    """Test accuracy and training loss per epoch of each run. ``histories``: label ->
    DataFrame with the columns of metrics.jsonl (epoch, test_accuracy, train_loss)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(MAX_WIDTH, 3.4 + 0.25 * math.ceil(len(histories) / 3)),
                                 layout="constrained")
    for label, h in histories.items():
        a1.plot(h["epoch"], 100 * h["test_accuracy"], marker="o", ms=3, label=label)
        a2.plot(h["epoch"], h["train_loss"], marker="o", ms=3, label=label)
    a1.set(xlabel="epoch", ylabel="test accuracy (%)")
    a2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    # a loss spans about one decade: label 0.5, 1, 2, 3 plainly, not as 10^0 and 2x10^0
    a2.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 3, 5)))
    a2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a2.yaxis.set_minor_formatter(NullFormatter())
    a1.grid(alpha=0.3)
    a2.grid(alpha=0.3)
    _legend(fig, 3)     # below both panels, where it covers no curve
    return _finish(fig, title)


def lr_sweeps(tables, chosen=None):
    """The learning-rate sweeps of several models side by side (one panel each, at most 4,
    shared y): final test accuracy (%) against the learning rate on a log-2 axis, a
    band from the best point down one binomial standard error 100 sqrt(p (1 - p) / n) shaded
    (the one-standard-error rule picks the smallest rate inside it), and the chosen rate marked.

    ``tables``: model label -> DataFrame with columns "lr", "test accuracy (%)",
    "test images", "status" (facnnbook.table1.sweep_table); rows whose status is not
    "done" or whose accuracy is missing are skipped. ``chosen``: label -> chosen lr.
    """
    tables, chosen = dict(tables), dict(chosen or {})
    if not 1 <= len(tables) <= 4:
        raise ValueError(f"lr_sweeps draws 1 to 4 models side by side, got {len(tables)}; "
                         f"split them over several figures")
    width = min(MAX_WIDTH, 1.2 + 2.2 * len(tables))
    fig, axes = plt.subplots(1, len(tables), figsize=(width, 3.6), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, (label, t) in zip(axes[0], tables.items()):
        t = t[(t["status"] == "done") & t["test accuracy (%)"].notna()].sort_values("lr")
        lr, acc, n = (t[k].to_numpy(float) for k in ("lr", "test accuracy (%)", "test images"))
        ax.set_title(_wrap(label, 0.9 * width / len(tables), 11), fontsize=11)
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        if not len(lr):
            ax.text(0.5, 0.5, "no finished run", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            continue
        ticks = lr[::max(2, math.ceil(len(lr) / 5))]          # every other swept rate, at most 5
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        b = int(np.argmax(acc))
        p = acc[b] / 100
        se = 100 * math.sqrt(p * (1 - p) / n[b]) if n[b] > 0 else 0.0
        # the band the one-SE rule picks from: rates whose accuracy is at most 1 SE below the best
        ax.axhspan(acc[b] - se, acc[b], color="tab:blue", alpha=0.15, lw=0,
                   label="within 1 SE of the best")
        ax.plot(lr, acc, marker="o", ms=4, color="tab:blue", zorder=3)
        if chosen.get(label) is not None:
            c = float(chosen[label])
            ax.axvline(c, color="tab:red", lw=1, ls="--", zorder=2, label="chosen")
            hit = np.isclose(lr, c)
            ax.plot(lr[hit], acc[hit], marker="*", ms=12, color="tab:red", zorder=4)
    axes[0, 0].set_ylabel("test accuracy (%)")
    fig.supxlabel("learning rate (log scale)", fontsize=plt.rcParams["axes.labelsize"])
    _legend(fig, 2, "outside upper center")   # inside a panel it would be wider than a narrow one
    return fig


def theorem1_maps(v, title: str | None = None):
    """Theorem 1, side by side: for each image (row) and three classes (label first), the
    averaged FA-CNN class map, Grad-CAM with the score Y^c as target (the theorem's) and
    Grad-CAM with the L1-normalised probability as target; r = Pearson correlation with
    the class map. ``v``: the dict of facnnbook.chapters.theorem1_study."""
    from .theory import pearson
    import torch
    names = v["class_names"]
    n, k = v["classes"].shape
    cols = 1 + 3 * k
    width = min(MAX_WIDTH, 1.25 * cols)
    panel_in = width / cols
    fig, axes = plt.subplots(n, cols, figsize=(width, n * (panel_in + 0.65) + 0.2), squeeze=False)
    for i in range(n):
        img = v["images"][i]
        _panel(axes[i, 0], img, None, f"label: {names[v['labels'][i]]}", panel_in)
        for j in range(k):
            c, fa = names[v["classes"][i, j]], v["fa"][i, j]
            _panel(axes[i, 1 + 3 * j], img, fa, f"{c}\nclass map", panel_in)
            for col, key, what in ((2, "gc_score", "Grad-CAM Y"), (3, "gc_prob", "Grad-CAM p")):
                r = float(pearson(torch.as_tensor(fa), torch.as_tensor(v[key][i, j])))
                _panel(axes[i, 3 * j + col], img, v[key][i, j], f"{c}\n{what}\nr={r:.3f}", panel_in)
    return _finish(fig, title, pad=0.3, h_pad=0.3, w_pad=0.2)


def correlation_hist(v, title: str | None = None):
    """Per-map correlation between class maps and Grad-CAM over all test images and
    classes, for the two Grad-CAM targets."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    bins = np.linspace(-1, 1, 81)
    for key, label, colour in (("corr_score", "target: score $Y^c$ (Theorem 1)", "tab:red"),
                               ("corr_prob", "target: normalised probability", "tab:blue")):
        c = np.asarray(v[key], float).ravel()
        c = c[~np.isnan(c)]
        ax.hist(c, bins=bins, alpha=0.6, color=colour, label=f"{label} ({len(c)} maps)")
    ax.set(xlabel="Pearson correlation, class map vs Grad-CAM", ylabel="maps", yscale="log")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _finish(fig, title)


def layer_correlations(stats, thresholds=(), marks=()):
    """How far class map and Grad-CAM agree through depth: per dataset (one line each) the
    median Pearson correlation between the two maps over many images, with the band between
    its quartiles shaded; x = relative depth L/N, so networks of any depth share the axis
    (Theorem 1 says 1 at L/N = 1). ``thresholds``: dotted horizontal lines (our readings of
    "high"); ``marks``: (relative depth, label) pairs drawn as dashed vertical lines (the
    paper's own statements, e.g. (0.5, "stork: layer 12 of 24")).

    ``stats``: DataFrame with columns "dataset", "rel_depth", "median", "q25", "q75".
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    lo = min(-0.25, float(np.nanmin(stats["q25"].to_numpy(float))) - 0.1)   # room below the band
    for t in thresholds:
        ax.axhline(t, color="0.55", lw=0.8, ls=":")
        ax.annotate(f"{t:g}", (1.0, t), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", va="center", color="0.4")
    for x, label in marks:
        ax.axvline(x, color="tab:red", lw=1, ls="--", alpha=0.7)
        ax.annotate(label, (x, lo), xytext=(-3, 2), textcoords="offset points", rotation=90,
                    ha="right", va="bottom", color="tab:red",
                    bbox=dict(fc="white", ec="none", alpha=0.75, pad=1))
    for d, s in stats.groupby("dataset", sort=False):
        s = s.sort_values("rel_depth")
        x = s["rel_depth"].to_numpy(float)
        line, = ax.plot(x, s["median"].to_numpy(float), marker="o", ms=4, label=f"{d}, median")
        ax.fill_between(x, s["q25"].to_numpy(float), s["q75"].to_numpy(float),
                        color=line.get_color(), alpha=0.2, lw=0, label=f"{d}, quartiles")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set(xlabel="relative depth L / N", ylabel="correlation r", ylim=(lo, 1.05), xlim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, frameon=False)
    return _finish(fig)


def bounded_increment(v, title: str | None = None):
    """Theorem 2: top, max |S_L - S_(L-1)| per layer for each model (log y) against
    delta = 1/N (a thin dashed line drawn beneath the curves, so FA-CNN's increments, which
    sit near it, stay visible); below, each model's morph strip (its label's class map of
    S_L, at most 10 layers ending at N, one colour scale per model). ``v``: the dict of
    facnnbook.chapters.combine_bounded."""
    rows, models = v["rows"], list(v["models"])
    strips = {m: v["morph_" + "".join(ch if ch.isalnum() else "_" for ch in m)] for m in models}
    shown = _strip_layers(max(len(s) for s in strips.values()) - 1)
    panel_in = MAX_WIDTH / (len(shown) + 1.8)
    strips_in = (panel_in + 0.25) * len(models) + 0.2
    fig = plt.figure(figsize=(MAX_WIDTH, 4.0 + strips_in), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.0, strips_in])
    ax = top.subplots()
    delta = float(rows["delta"].iloc[0])
    ax.axhline(delta, color="0.35", ls=(0, (5, 3)), lw=1.0, zorder=1,
               label=f"$\\delta$ = 1/N = {delta:.3g}")
    fa = [m for m in models if "vanilla" not in m.lower()]
    for k, m in enumerate(models):
        style = dict(marker="os^Dv"[k % 5], ms=5, lw=1.6, zorder=2)
        if m in fa:
            # FA-CNN curves above delta's line; the first with large hollow markers, the
            # next smaller and filled, so curves that coincide stay distinguishable
            i = fa.index(m)
            style.update(ms=max(4.0, 10 - 3 * i), zorder=4 + i, mfc="none" if i == 0 else None, mew=1.5)
        r = rows[rows["model"] == m].sort_values("layer")
        ax.plot(r["layer"], r["max_increment"], label=m, **style)
    ax.set(xlabel="layer L", ylabel="max |$S_L - S_{L-1}$|", yscale="log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _legend(top, 3)
    grid = bottom.subplots(len(models), len(shown) + 1, squeeze=False,
                           width_ratios=[1.8] + [1] * len(shown))
    for i, m in enumerate(models):
        s = strips[m]
        vmax = float(np.max(s[1:])) or 1.0
        grid[i, 0].text(1.0, 0.5, _wrap(f"{m}\n0 .. {vmax:.3g}", 1.7 * panel_in),
                        fontsize=SMALL, ha="right", va="center", transform=grid[i, 0].transAxes)
        grid[i, 0].axis("off")
        for j, L in enumerate(shown):
            a = grid[i, 1 + j]
            if L < len(s):
                a.imshow(s[L], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            a.set(xticks=[], yticks=[])
            if i == 0:
                a.set_title(f"$S_{{{L}}}$", fontsize=SMALL)
    return _finish(fig, title)


def layer_maps(v, class_names, images=None, title: str | None = None):
    """Figures 1/5 for a facnnbook.chapters.qualitative_study dict: for each image a pair
    of rows, per layer (columns) the averaged FA-CNN map (top) and Grad-CAM (bottom) with
    their Pearson correlation r; on the right the image, RISE and K-OCC."""
    layers = list(v["layers"])
    images = list(range(len(v["images"])) if images is None else images)
    n = len(layers)
    width = min(MAX_WIDTH, 1.3 * (n + 2))
    panel_in = width / (n + 2)
    fig, axes = plt.subplots(2 * len(images), n + 2,
                             figsize=(width, 2 * len(images) * (panel_in + 0.55)), squeeze=False)
    for row, i in enumerate(images):
        img, c = v["images"][i], int(v["classes"][i])
        top, bot = axes[2 * row], axes[2 * row + 1]
        for j, L in enumerate(layers):
            _panel(top[j], img, v["fa"][i, j], f"layer {L}\nFA-CNN", panel_in)
            _panel(bot[j], img, v["gc"][i, j], f"Grad-CAM\nr={float(v['corr'][i, j]):.2f}", panel_in)
        _panel(top[n], img, None, class_names[c], panel_in)
        bot[n].text(0.5, 0.5, _wrap(f"predicted:\n{class_names[int(v['pred'][i])]}", panel_in),
                    fontsize=SMALL, ha="center", va="center", transform=bot[n].transAxes)
        bot[n].axis("off")
        _panel(top[n + 1], img, v["rise"][i], "RISE", panel_in)
        _panel(bot[n + 1], img, v["kocc"][i], "K-OCC", panel_in)
    return _finish(fig, title, pad=0.3, h_pad=0.3, w_pad=0.2)


def pairs(images, maps_a, maps_b, names, titles=("class map", "Grad-CAM"), r=None):
    """Two saliency maps of the same images compared: a grid of 3 rows x n columns, the
    image (titled with its class name), map a laid over it, map b laid over it (titled
    with r, e.g. the Pearson correlation of the two maps, when given). Each map is
    stretched to [0, 1] and to the image size.

    images: uint8 (n, 3, H, W) tensor or array; maps_a, maps_b: (n, h, w); names: n class
    names; titles: the row names of maps a and b; r: n numbers or None.
    """
    images, maps_a, maps_b = np.asarray(images), np.asarray(maps_a), np.asarray(maps_b)
    n = len(images)
    if not (len(maps_a) == len(maps_b) == len(names) == n):
        raise ValueError(f"pairs needs one map a, map b and name per image: got {n} images, "
                         f"{len(maps_a)} and {len(maps_b)} maps, {len(names)} names")
    width = min(MAX_WIDTH, 1.0 + 1.5 * n)
    panel_in = (width - 0.4) / n
    fig, axes = plt.subplots(3, n, figsize=(width, 3 * (panel_in + 0.4) + 0.1), squeeze=False)
    for i in range(n):
        _panel(axes[0, i], images[i], None, str(names[i]), panel_in)
        _panel(axes[1, i], images[i], maps_a[i])
        _panel(axes[2, i], images[i], maps_b[i], None if r is None else f"r = {float(r[i]):.2f}", panel_in)
    for row, what in enumerate(titles, 1):
        axes[row, 0].set_ylabel(_wrap(what, panel_in + 0.3), fontsize=SMALL)
    return _finish(fig, pad=0.3, h_pad=0.4, w_pad=0.2)


def seed_effects(q):
    """A forest plot of the effects Table 1's questions ask about: one row per (dataset,
    question), our mean effect over seeds with its 95 % interval as an error bar, the
    paper's effect as a cross, and a vertical line at 0 (no effect).

    ``q``: DataFrame with columns "dataset", "question", "ours", "ci95" ((lo, hi) or None),
    "paper", and optionally "short" (a short question label, used when present; long
    questions are otherwise cut to 40 characters) and "threshold" (drawn as a grey tick).
    """
    rows = list(q.to_dict("records"))
    if not rows:
        raise ValueError("seed_effects needs at least one (dataset, question) row")
    fig, ax = plt.subplots(figsize=(MAX_WIDTH, 1.4 + 0.42 * len(rows)), layout="constrained")
    short = [r["short"] if isinstance(r.get("short"), str) else str(r["question"]) for r in rows]
    labels = [f"{r['dataset']}: {_cut(text, 40)}" for r, text in zip(rows, short)]
    colours = {}
    styles = [(colours.setdefault(r["dataset"], f"C{len(colours)}"), "ours (mean, 95 % CI)", "not run")
              for r in rows]
    _forest(ax, rows, labels, styles, ms=(6, 16, 9))
    ax.axvline(0, color="0.4", lw=0.8, zorder=1)
    ax.set_xlabel("effect (accuracy points)")
    _legend(fig, 3)
    return fig


def explorer_view(e, class_names, title: str | None = None):
    """The explorer's picture for a facnnbook.chapters.explore dict: the image, the class
    map and Grad-CAM at the chosen layer, the image after removal with the predictions,
    and the morph strip of the class map through every layer (at most 10 of them)."""
    strip = e["strip"]
    shown = _strip_layers(len(strip))
    cols = max(len(shown), 4)
    w = cols // 4
    panel_in = MAX_WIDTH * w / cols
    heights = [panel_in + 0.55, MAX_WIDTH / cols + 0.3]
    fig = plt.figure(figsize=(MAX_WIDTH, sum(heights)))
    gs = fig.add_gridspec(2, cols, height_ratios=heights)
    img, at = e["image"], f"{class_names[int(e['cls'])]}, layer {e['layer']}"
    top = [fig.add_subplot(gs[0, k * w:(k + 1) * w]) for k in range(4)]
    b, a = int(np.argmax(e["before"])), int(np.argmax(e["after"]))
    _panel(top[0], img, None, f"predicted: {class_names[b]} ({e['before'][b]:.2f})", panel_in)
    _panel(top[1], img, e["fa"], f"class map: {at}", panel_in)
    _panel(top[2], img, e["gc"], f"Grad-CAM: {at}", panel_in)
    _panel(top[3], e["removed"], None, f"{100 * e['fraction']:.0f} % removed ({e['order'].upper()}): "
           f"{class_names[a]} ({e['after'][a]:.2f})", panel_in)
    for j, L in enumerate(shown):
        _panel(fig.add_subplot(gs[1, j]), img, strip[L - 1], f"L{L}")
    return _finish(fig, title, pad=0.3)


def morph_strip(image, maps, title: str | None = None):
    """One image and its class map at each layer 1..N (each map at its layer's own
    resolution and colour scale), in one row (two rows past 8 layers).

    image: uint8 (3, H, W); maps: N maps (h_L, w_L)."""
    maps = list(maps)
    n = len(maps) + 1
    rows = 1 if n <= 9 else 2
    cols = math.ceil(n / rows)
    width = min(MAX_WIDTH, 0.9 * cols + 0.3)
    # each row needs room for its labels above the maps, and the title above them all
    height = rows * (width / cols + 0.3) + (0.3 if title else 0.05)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    _strip(axes.ravel(), image, maps)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return _finish(fig, title, pad=0.3)


def morph_strips(image, strips):
    """One image and the class maps of several classes through depth: a row per class
    (its name on the left, the image above the first), each map at its layer's own
    resolution and colour scale.

    image: uint8 (3, H, W); strips: {class name: N maps (h_L, w_L)}, the same N each."""
    names = list(strips)
    if not names or len({len(v) for v in strips.values()}) != 1:
        raise ValueError("strips must map at least one class name to the same number of maps")
    n = len(strips[names[0]]) + 1
    width = min(MAX_WIDTH, 0.75 * n + 0.3)
    fig, axes = plt.subplots(len(names), n, figsize=(width, len(names) * (width / n) + 0.5),
                             squeeze=False)
    for r, name in enumerate(names):
        _strip(axes[r], image if r == 0 else None, strips[name])
        axes[r, 1].set_ylabel(_wrap(name, 1.0), fontsize=SMALL)
    return _finish(fig, pad=0.3)


_VERDICT_COLOURS = {"holds": "#2e7d32", "fails": "#c62828", "inconclusive": "#f9a825", "not run": "0.6"}
_GROUP_AXES = {"theory": "Pearson r, or largest increment in units of 1/N",
               "accuracy": "accuracy points, model a - model b",
               "attribution": "bootstrap support (Figure 4), Pearson r (Figures 1/5)"}


def claims_forest(claims, groups, names=None):
    """Every quantitative claim in one figure, a panel per group (theory, accuracy,
    attribution): our value with its 95 % interval coloured by verdict, the paper's value as
    a cross and the claim's threshold as a grey tick where it has them; "not run" at the
    left edge. ``claims``: dicts of the claims file; ``groups``: source -> group (the book's
    facnnbook.claims.GROUPS); ``names``: dataset id -> name."""
    names = names or {}
    panels: dict[str, list] = {}
    for c in claims:
        panels.setdefault(groups.get(c["source"], "other"), []).append(c)
    order = [g for g in ("theory", "accuracy", "attribution", "other") if g in panels]
    if not order:
        raise ValueError("claims_forest needs at least one claim")
    heights = [0.8 + 0.32 * len(panels[g]) for g in order]
    fig, axes = plt.subplots(len(order), 1, figsize=(MAX_WIDTH, sum(heights) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for ax, g in zip(axes[:, 0], order):
        rows = panels[g]
        labels = []
        for c in rows:
            text, ds = _cut(c.get("short") or c["statement"], 42), names.get(c["dataset"], c["dataset"])
            labels.append(f"{ds}: {text}" if ds else text)
        styles = [(_VERDICT_COLOURS[c["verdict"]], c["verdict"], c["verdict"]) for c in rows]
        _forest(ax, rows, labels, styles, ms=(5, 12, 8), fontsize=SMALL)
        ax.set_title(g, loc="left", fontsize=11, fontweight="bold")
        ax.set_xlabel(_GROUP_AXES.get(g, ""), fontsize=SMALL)
    _legend(fig, 4)
    return fig
