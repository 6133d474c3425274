"""Figures. Each function takes results (tables, maps) and returns a matplotlib Figure;
none of them computes anything the library does not already return."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt  # noqa: E402


# -- Figure 4: pixel-removal curves (facnn.removal) ---------------------------------------

REMOVAL_STYLE = {  # method -> (label, colour, line width, marker)
    # at the last layer FA-CNN and Grad-CAM rank pixels identically (Theorem 1), so their
    # curves coincide: FA-CNN is drawn wide underneath, Grad-CAM thin on top
    "fa-cnn": ("FA-CNN", "tab:red", 4.0, None), "grad-cam": ("Grad-CAM", "tab:blue", 1.3, "o"),
    "rise": ("RISE", "tab:green", 1.5, "o"), "k-occ": ("K-OCC", "tab:orange", 1.5, "o"),
    "random": ("RAND", "tab:gray", 1.5, "o"),
}
ORDER_TITLE = {"lerf": "LeRF (least relevant removed first)",
               "morf": "MoRF (most relevant removed first)"}


def removal_curves(table, layers=None, orders=None, methods=None, title: str | None = None):
    """Figure 4 of the paper: top-1 accuracy against the fraction of pixels removed.

    ``table`` is ``run_benchmark(...).table`` (or the result itself, or a loaded
    ``curves.csv``). Rows of panels are removal orders, columns are FA-CNN layers (last
    layer first, as the paper's top panel is layer 24). Methods without a layer (RISE,
    K-OCC, RAND) are drawn in every panel; RAND's band is mean +- one std over seeds.
    """
    t = getattr(table, "table", table)
    orders = list(orders or [o for o in ("lerf", "morf") if o in set(t["order"])])
    layered = t[t["layer"].notna()]
    layers = list(layers or sorted({int(v) for v in layered["layer"]}, reverse=True) or [None])
    methods = list(methods or dict.fromkeys(t["method"]))
    fig, axes = plt.subplots(len(orders), len(layers), figsize=(4.2 * len(layers), 3.4 * len(orders)),
                             sharex=True, sharey=True, squeeze=False)
    for i, order in enumerate(orders):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            for method in methods:
                rows = t[(t["method"] == method) & (t["order"] == order)]
                on_layer = rows[rows["layer"] == layer] if layer is not None else rows.iloc[:0]
                rows = on_layer if len(on_layer) else rows[rows["layer"].isna()]
                if len(rows):
                    _removal_line(ax, rows.sort_values("fraction"), method)
            ax.set_title(f"{ORDER_TITLE.get(order, order)}" + (f"\nlayer {layer}" if layer else ""),
                         fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(orders) - 1:
                ax.set_xlabel("fraction of pixels removed")
            if j == 0:
                ax.set_ylabel("top-1 accuracy")
    axes[0, -1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _removal_line(ax, rows, method: str) -> None:
    label, colour, lw, marker = REMOVAL_STYLE.get(method, (method, None, 1.5, "o"))
    x, y = rows["fraction"].to_numpy(float), rows["accuracy"].to_numpy(float)
    ax.plot(x, y, marker=marker, ms=3, lw=lw, color=colour, label=label,
            ls="--" if method == "random" else "-", alpha=0.6 if lw > 2 else 1.0)
    if "accuracy_std" in rows and rows["accuracy_std"].notna().any():
        s = rows["accuracy_std"].fillna(0).to_numpy(float)
        ax.fill_between(x, y - s, y + s, color=colour, alpha=0.2, lw=0)


# -- the book's other figures (notebooks 01-06) ----------------------------------------------

def stamp(fig, text: str):
    """Write a provenance line in the figure's bottom-right corner; returns the figure."""
    fig.text(0.995, 0.002, text, ha="right", va="bottom", fontsize=6.5, color="0.45")
    return fig


def _rgb(image):
    """uint8 (3, H, W) -> (H, W, 3) for imshow."""
    import numpy as np
    return np.asarray(image).transpose(1, 2, 0)


def _overlay(ax, image, m, title: str | None = None, alpha: float = 0.55, norm: bool = True):
    """An image with a saliency map laid over it (the map is stretched to the image)."""
    import numpy as np
    h, w = image.shape[-2:]
    ax.imshow(_rgb(image))
    m = np.asarray(m, float)
    if norm:
        lo, hi = np.nanmin(m), np.nanmax(m)
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    ax.imshow(m, cmap="jet", alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="bilinear", vmin=0, vmax=1 if norm else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7.5)


def learning_curves(histories, title: str | None = None):
    """Test accuracy and training loss per epoch of each run. ``histories``: label ->
    DataFrame with the columns of metrics.jsonl (epoch, test_accuracy, train_loss)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, h in histories.items():
        a1.plot(h["epoch"], 100 * h["test_accuracy"], marker="o", ms=3, label=label)
        a2.plot(h["epoch"], h["train_loss"], marker="o", ms=3, label=label)
    a1.set(xlabel="epoch", ylabel="test top-1 accuracy (%)", title="test accuracy")
    a2.set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def lr_sweep(table, default: float | None = None, title: str | None = None):
    """Final test accuracy against the learning rate (log axis) of the minimal recipe's
    sweep; ``table`` from facnn.table1.sweep_table, ``default`` marked with a line."""
    done = table[table["status"] == "done"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(done["lr"], done["test accuracy (%)"], marker="o", label="after the last epoch")
    ax.plot(done["lr"], done["best epoch (%)"], marker=".", ls=":", label="best epoch")
    if default is not None:
        ax.axvline(default, color="k", lw=0.8, ls="--", label=f"default lr {default:g}")
    ax.set(xscale="log", xlabel="learning rate (minimal recipe: SGD, no momentum, cosine)",
           ylabel="test top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def theorem1_maps(v, title: str | None = None):
    """Theorem 1, side by side: for each image (row) and three classes (label first), the
    averaged FA-CNN class map, Grad-CAM with the score Y^c as target (the theorem's) and
    Grad-CAM with the L1-normalised probability as target; r = Pearson correlation with
    the class map. ``v``: the dict of facnn.experiments.theorem1_study."""
    from .theory import pearson
    import torch
    names = v["class_names"]
    n, k = v["classes"].shape
    fig, axes = plt.subplots(n, 1 + 3 * k, figsize=(1.25 * (1 + 3 * k), 1.75 * n + 0.6),
                             squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_rgb(v["images"][i]))
        axes[i, 0].set_title(f"label: {names[v['labels'][i]]}", fontsize=7.5)
        axes[i, 0].axis("off")
        for j in range(k):
            c = names[v["classes"][i, j]]
            fa = v["fa"][i, j]
            for t, (key, what) in enumerate((("fa", "class map"), ("gc_score", "Grad-CAM Y"),
                                             ("gc_prob", "Grad-CAM p"))):
                m = v[key][i, j]
                r = float(pearson(torch.as_tensor(fa), torch.as_tensor(m)))
                sub = f"{c}\n{what}" + ("" if key == "fa" else f"\nr={r:.3f}")
                _overlay(axes[i, 1 + 3 * j + t], v["images"][i], m, sub)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def correlation_hist(v, title: str | None = None):
    """Per-map correlation between class maps and Grad-CAM over all test images and
    classes, for the two Grad-CAM targets."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bins = np.linspace(-1, 1, 81)
    for key, label, colour in (("corr_score", "target: score Y^c (Theorem 1)", "tab:red"),
                               ("corr_prob", "target: L1-normalised probability", "tab:blue")):
        c = np.asarray(v[key], float).ravel()
        c = c[~np.isnan(c)]
        ax.hist(c, bins=bins, alpha=0.6, color=colour, label=f"{label} ({len(c)} maps)")
    ax.set(xlabel="Pearson correlation, class map vs Grad-CAM", ylabel="maps", yscale="log")
    ax.legend(fontsize=7.5, loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def bounded_increment(v, title: str | None = None):
    """Theorem 2: left, max |S_L - S_(L-1)| per layer for each model against delta = 1/N;
    below, each model's morph strip (its label's class map of S_1 .. S_N, one colour scale
    per model). ``v``: the dict of facnn.experiments.bounded_increment_study."""
    import numpy as np
    rows, models = v["rows"], list(v["models"])
    strips = {m: v["morph_" + "".join(ch if ch.isalnum() else "_" for ch in m)] for m in models}
    n = max(len(s) for s in strips.values()) - 1
    fig = plt.figure(figsize=(max(7.0, 1.05 * n + 2.6), 3.0 + 1.05 * len(models)))
    gs = fig.add_gridspec(1 + len(models), n + 2, height_ratios=[3.0] + [1] * len(models),
                          width_ratios=[1] * n + [0.1, 2.2])
    ax = fig.add_subplot(gs[0, :])
    for m in models:
        r = rows[rows["model"] == m]
        ax.plot(r["layer"], r["max_increment"], marker="o", ms=4, label=m)
    delta = float(rows["delta"].iloc[0])
    ax.axhline(delta, color="k", ls="--", lw=1, label=f"delta = 1/N = {delta:.4f}")
    ax.set(xlabel="layer L", ylabel="max |S_L - S_(L-1)|", yscale="log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    for i, m in enumerate(models):
        s = strips[m][1:]                                    # S_1 .. S_N
        vmax = float(np.max(s)) or 1.0
        for L in range(len(s)):
            a = fig.add_subplot(gs[1 + i, L])
            a.imshow(s[L], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_title(f"S_{L + 1}", fontsize=7)
        a = fig.add_subplot(gs[1 + i, n + 1])
        a.text(0.0, 0.5, f"{m}\ncolour scale 0 .. {vmax:.3g}", fontsize=7, va="center")
        a.axis("off")
    fig.suptitle(title or f"rescaled maps of class '{v['class_name']}' through depth",
                 fontsize=10)
    fig.tight_layout()
    return fig


def layer_maps(v, class_names, images=None, title: str | None = None):
    """Figures 1/5 for a facnn.experiments.qualitative_study dict: for each image a pair of
    rows, per layer (columns) the averaged FA-CNN map (top) and Grad-CAM (bottom) with
    their Pearson correlation r; on the right the image, RISE and K-OCC."""
    layers = list(v["layers"])
    images = list(range(len(v["images"])) if images is None else images)
    n = len(layers)
    fig, axes = plt.subplots(2 * len(images), n + 2, figsize=(1.3 * (n + 2), 3.5 * len(images)),
                             squeeze=False)
    for row, i in enumerate(images):
        img, c = v["images"][i], int(v["classes"][i])
        top, bot = axes[2 * row], axes[2 * row + 1]
        for j, L in enumerate(layers):
            _overlay(top[j], img, v["fa"][i, j], f"layer {L}\nFA-CNN")
            _overlay(bot[j], img, v["gc"][i, j], f"Grad-CAM\nr = {float(v['corr'][i, j]):.2f}")
        top[n].imshow(_rgb(img))
        pred = class_names[int(v["pred"][i])]
        top[n].set_title(f"class: {class_names[c]}\npredicted: {pred}", fontsize=7.5)
        top[n].axis("off")
        bot[n].axis("off")
        _overlay(top[n + 1], img, v["rise"][i], "RISE")
        _overlay(bot[n + 1], img, v["kocc"][i], "K-OCC")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def explorer_view(e, class_names, title: str | None = None):
    """The explorer's picture for a facnn.experiments.explore dict: the image, the class
    map and Grad-CAM at the chosen layer, the image after removal with the predictions,
    and the morph strip of the class map through every layer."""
    import numpy as np
    strip = e["strip"]
    n = len(strip)
    fig = plt.figure(figsize=(max(8, 1.0 * n), 4.6))
    gs = fig.add_gridspec(2, max(n, 4), height_ratios=[2.2, 1])
    w = max(n, 4) // 4
    img, c = e["image"], int(e["cls"])
    top = [fig.add_subplot(gs[0, k * w:(k + 1) * w]) for k in range(4)]
    top[0].imshow(_rgb(img))
    b = int(np.argmax(e["before"]))
    top[0].set_title(f"image\npredicted: {class_names[b]} ({e['before'][b]:.2f})", fontsize=8)
    top[0].axis("off")
    _overlay(top[1], img, e["fa"], f"class map: {class_names[c]}\nlayer {e['layer']}")
    _overlay(top[2], img, e["gc"], f"Grad-CAM: {class_names[c]}\nlayer {e['layer']}")
    a = int(np.argmax(e["after"]))
    top[3].imshow(_rgb(e["removed"]))
    top[3].set_title(f"{100 * e['fraction']:.0f} % removed ({e['order'].upper()})\n"
                     f"predicted: {class_names[a]} ({e['after'][a]:.2f})", fontsize=8)
    top[3].axis("off")
    for L in range(n):
        ax = fig.add_subplot(gs[1, L])
        _overlay(ax, img, strip[L], f"L{L + 1}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
