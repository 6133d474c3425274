"""An ipywidgets explorer for a trained FA-CNN (notebook 08).

Pick a test image (or upload one), a class, a layer, a removal fraction and order; see the
class map and Grad-CAM at that layer, the class map through every layer (the morph strip),
the image with that fraction of its pixels removed, and the prediction before and after.
Everything it draws comes from :func:`facnn.experiments.explore`.
"""
from __future__ import annotations

import io

import torch

from facnn import data as D
from . import chapters as X
from facnn import plots


def _upload_image(upload, size: int) -> torch.Tensor | None:
    """The last uploaded file as uint8 (3, size, size), or None."""
    value = upload.value
    if not value:
        return None
    item = value[-1] if isinstance(value, (list, tuple)) else list(value.values())[-1]
    content = item["content"] if isinstance(item, dict) else item.content
    return X.load_photo(io.BytesIO(bytes(content)), size)


def build(model, test, n_images: int = 50, seed: int = 0):
    """The explorer widget for ``model`` over ``n_images`` images of ``test`` spread over
    its classes (test sets come sorted by class: the first 50 would all be airplanes)."""
    import ipywidgets as W
    from IPython.display import display
    import matplotlib.pyplot as plt

    size = test.images.shape[-1]
    names = list(test.classes)
    shown = sorted(int(i) for i in X.distinct_classes(test, min(n_images, len(test)), seed))
    pick = W.Dropdown(options=[(f"test image {i} ({names[int(test.labels[i])]})", i)
                               for i in shown], description="image")
    upload = W.FileUpload(accept="image/*", multiple=False, description="or upload")
    use_upload = W.Checkbox(value=False, description="use the upload")
    cls = W.Dropdown(options=[("label of the image", -1)] + [(n, i) for i, n in enumerate(names)],
                     description="class")
    layer = W.IntSlider(value=model.depth, min=1, max=model.depth, description="layer")
    fraction = W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="removed")
    order = W.ToggleButtons(options=[("least relevant first", "lerf"),
                                     ("most relevant first", "morf")], description="order")
    out = W.Output()

    def draw(*_):
        image = _upload_image(upload, size) if use_upload.value else None
        label = None
        if image is None:
            image, label = test.images[pick.value], int(test.labels[pick.value])
        c = cls.value if cls.value >= 0 else (label if label is not None else
                                                 int(X.predict(model, D.normalise(image[None], test.name))[0]))
        e = X.explore(model, image, c, layer.value, fraction.value, order.value, test.name)
        with out:
            out.clear_output(wait=True)
            fig = plots.explorer_view(e, names)
            display(fig)
            plt.close(fig)

    for w in (pick, upload, use_upload, cls, layer, fraction, order):
        w.observe(draw, names="value")
    draw()
    return W.VBox([W.HBox([pick, upload, use_upload]), W.HBox([cls, layer]),
                   W.HBox([fraction, order]), out])
