"""Read chest X-rays (PNG, JPEG, TIFF, BMP, DICOM) into float32 grey pixels in [0, 1] plus metadata.

``read_image(source)`` returns ``(pixels, meta)``; ``image_size(source)`` reads the header only.
Anything that cannot be read raises ``ImageReadError`` (a ``ValueError``) with a message a person
understands; no other exception type escapes. See ``raster`` and ``dicom`` for the conversion rules.
``assess_image`` (``quality``) refuses images with nothing to see before any prediction, and
``read_upload`` (``upload``) applies the dashboard's upload size limit first.
"""

from __future__ import annotations

from cxrcore.io.errors import ImageReadError
from cxrcore.io.quality import DegenerateImageError, ImageQuality, assess_image
from cxrcore.io.reader import image_size, read_image
from cxrcore.io.source import DEFAULT_MAX_PIXELS, MIN_SIDE
from cxrcore.io.upload import MAX_UPLOAD_MB, UploadTooLargeError, check_upload_size, read_upload

# File name extensions the dashboard's uploaders accept (the reader itself goes by content, not name).
UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom", "tif", "tiff", "bmp"]

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_UPLOAD_MB",
    "MIN_SIDE",
    "UPLOAD_TYPES",
    "DegenerateImageError",
    "ImageQuality",
    "ImageReadError",
    "UploadTooLargeError",
    "assess_image",
    "check_upload_size",
    "image_size",
    "read_image",
    "read_upload",
]
