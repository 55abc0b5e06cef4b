"""ONNX export of a model, for serving it outside Python (one grey channel in, logits out)."""

from __future__ import annotations

import copy
import io
import logging
import warnings

import torch

from cxrcore.models.lock import model_lock
from cxrcore.models.registry import CXRModel

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(model: CXRModel, opset: int = OPSET) -> bytes:
    """The model as ONNX bytes: input "image" (batch, channels, size, size) normalised, output "logits".

    The export traces a copy, so a model shared with other threads is never touched.
    """
    with model_lock(model):
        clone = copy.deepcopy(model).cpu().eval()
    spec = clone.spec
    example = torch.zeros(1, spec.in_chans, spec.input_size, spec.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript; the
        # traced input-shape check is constant for the exported input size, as intended.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            clone,
            (example,),
            buffer,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    data = buffer.getvalue()
    log.info("exported %s to ONNX (%d bytes)", spec.architecture, len(data))
    return data
