"""The explanation methods' vocabulary and default settings, without PyTorch.

Pages and the CLI offer these choices before any model runs, so they import this module and stay
light; ``cxrcore.explain.engine`` computes the maps and ``cxrcore.explain.cam`` holds one class per
Grad-CAM-family method under the same names (a test keeps the two lists equal).
"""

from __future__ import annotations

DEFAULT_METHODS: tuple[str, ...] = ("cam", "crm")
# The Grad-CAM family (cxrcore.explain.cam): gradients or extra passes, so computed only when asked.
EXTRA_METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "scorecam",
    "ablationcam",
)
# "cam": closed form for average-pooled heads, Grad-CAM otherwise; "crm": all output nodes;
# "crm_label": only the label's own node.
EXPLAIN_METHODS: tuple[str, ...] = (*DEFAULT_METHODS, "crm_label", *EXTRA_METHODS)
METHOD_NAMES: dict[str, str] = {
    "cam": "CAM",
    "crm": "CRM",
    "crm_label": "CRM (own label)",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
}
DEFAULT_SMOOTH = 1 / 16  # Gaussian standard deviation, as a fraction of the map's side
