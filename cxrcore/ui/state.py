"""Named session-state keys: the one place where state that survives a page change is defined."""

from __future__ import annotations

DATASET = "cxr.dataset"  # name of the dataset selected in the sidebar
CHECKPOINT = "cxr.checkpoint"  # path of the checkpoint selected in the sidebar
GALLERY_SEED = "cxr.gallery_seed"  # reshuffles the sample gallery
UPLOAD = "cxr.upload"  # (file name, bytes) of an image uploaded on the home page, shown on Explain
EXPLANATIONS = "cxr.explanations"  # the last few Explain results of this session, by image and settings
GUARD_VERDICTS = "cxr.guard_verdicts"  # the last few upload-guard verdicts of this session, by image, model
DETECTIONS = "cxr.detections"  # the last few lesion-detector results of this session, by image and detector
BATCH_REVIEWS = "cxr.batch_reviews"  # the last few reviews of several uploads (gallery and reports)
LUNG_MASKS = "cxr.lung_masks"  # the last few lung segmentations of this session, by segmenter and image
LABELS_IMAGE = "cxr.labels_image"  # the image (and label set) Explain's label choice belongs to
