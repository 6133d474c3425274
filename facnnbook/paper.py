"""The paper's own sentences that the book checks, each with where it stands.

Every claim in ``results/<profile>/claims.json`` quotes one of these (its ``quote`` field),
so a reader sees what the paper says beside our operational reading of it. The text is the
paper's, verbatim but for line-break hyphens (``tests/test_claims.py`` finds every quote in
``../shared/paper/`` where that folder exists).
"""
from __future__ import annotations

import re
from pathlib import Path

# key: (where, the sentence)
QUOTES: dict[str, tuple[str, str]] = {
    "vanilla": ("Section 5.1",
                "These results confirm that both the dampened skip connection and interpretable "
                "pooling actually improve performance relative to an identical Vanilla-CNN "
                "architecture, and with minimal training can even come close to ResNet models "
                "with the standard recipe."),
    "cifar10_resnets": ("Section 5.1",
                        "On CIFAR-10, FA-CNN with the Linear head attains 93.8% accuracy, matching "
                        "ResNet-18 (93.57%) and exceeding ResNet-50 (91.5%)."),
    "cifar100_resnet18": ("Section 5.1",
                          "On CIFAR-100, FA-CNN with the Pooling head achieves 77.03%, exceeding "
                          "ResNet-18 (73.96%) while providing intrinsic class attribution."),
    "same_recipe": ("Section 6",
                    "Moreover performance is slightly higher than ResNet when trained using an "
                    "identical training recipe, and slightly lower as compared to a stronger "
                    "standard recipe."),
    "imagenet_resnet18": ("Section 5.1",
                          "On the ImageNet-100 subset, FA-CNN reaches 81.78%, comparable to the "
                          "minimal-trained ResNet-18 baseline (77.74%)."),
    "standard": ("Section 5.1",
                 "In comparison to ResNet with the standard recipe, we see that the FA-CNN "
                 "(minimal) results are between 1% to 2% lower than the best ResNet model."),
    "theorem1": ("Theorem 1",
                 "Grad-CAM saliency maps are obtained by simply averaging together the R "
                 "penultimate feature maps designated to class c as follows."),
    "theorem2": ("Theorem 2",
                 "Rescaled feature maps exhibit bounded increment through depth."),
    "fig4_layers": ("Section 5.2, Figure 4",
                    "It is clear that for both FA-CNN and Grad-CAM the best results are obtained "
                    "using the penultimate layer (Layer 24), and the saliency maps for the "
                    "intermediate layer (Layer 18) are less robust for this task."),
    "fig4_random": ("Section 5.2, Figure 4",
                    "All methods are skillful relative to random removal."),
    "fig4_low": ("Section 5.2, Figure 4",
                 "In the low-removal range (0-20%), perturbation-based methods, particularly RISE "
                 "and K-OCC, typically exhibit the strongest robustness."),
    "fig4_raise": ("Section 5.2, Figure 4",
                   "This robustness is due to the permutation methods' ability to increase "
                   "classification accuracy when a small percentage of irrelevant pixels are "
                   "removed."),
    "fig4_no_raise": ("Section 5.2, Figure 4",
                      "FA-CNN and Grad-CAM are unable to increase classification accuracy in the "
                      "low-removal range,"),
    "fig4_mid": ("Section 5.2, Figure 4",
                 "but exhibit similar robustness to RISE and K-OCC in the moderate removal range "
                 "(40-60%)"),
    "fig4_high": ("Section 5.2, Figure 4",
                  "and exceeds K-OCC in the high removal range (60%+) showing a strong ability to "
                  "prevent relevant pixels from being removed."),
    "fig4_negative": ("Section 5.3, Figure 5",
                      "These negative attributions may be why the perturbation methods are able to "
                      "increase accuracy on the percent pixels removed task, whereas Grad-CAM and "
                      "FA-CNN raw features are unable to do so."),
    "fig4_order": ("Section 5.2",
                   "For each input image, a given percentage of the most salient pixels is "
                   "progressively removed, and the resulting drop in top-1 accuracy is measured."),
    "fig1_middle": ("Section 1, Figure 1",
                    "The middle layers also show high correlation and visually identify relevant "
                    "parts of the stork."),
    "fig1_identical": ("Section 1, Figure 1",
                       "One can see that the penultimate features are identical (correl 1.0),"),
    "fig1_layer12": ("Section 1, Figure 1",
                     "After Layer 9, the model has enough semantic context to suppress these "
                     "background features and by layer 12 onward the feature maps highly agree "
                     "with Grad-CAM."),
    "fig1_stork": ("Section 5.3, Figure 1",
                   "the FA-CNN feature maps for the Stork class show very good agreement "
                   "with Grad-CAM in layers 12 and onward."),
    "fig5_crate": ("Section 5.3, Figure 5",
                   "All methods correctly show that the shipping crate region is important for "
                   "correctly classifying the image as a crate, and that the trash can influential "
                   "in steering the network toward misclassification."),
    "fig5_layers": ("Section 5.3, Figure 5",
                    "The FA-CNN and Grad-CAM results show strong correlation starting layer 21, "
                    "although visual similarity can be seen in layer 9 onward."),
}


def quote(key: str) -> tuple[str, str]:
    """(where, sentence) of the paper's sentence ``key``; a KeyError names the keys."""
    if key not in QUOTES:
        raise KeyError(f"no paper quote {key!r}; known: {', '.join(QUOTES)}")
    return QUOTES[key]


def _squash(text: str) -> str:
    """Letters and digits only, lower case: line breaks, hyphenation and the PDF's quote
    marks drop out, so a sentence matches however the extraction wrapped it."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def missing_quotes(paper_text: str) -> list[str]:
    """The keys of QUOTES whose sentence is not in ``paper_text``."""
    body = _squash(paper_text)
    return [k for k, (_, s) in QUOTES.items() if _squash(s) not in body]


def paper_text(root: str | Path | None = None) -> str | None:
    """The paper's text from ``../shared/paper`` beside the repository (None where absent)."""
    folder = Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "paper"
    files = sorted(folder.glob("*.txt")) if folder.exists() else []
    return "\n".join(f.read_text(errors="replace") for f in files) or None
