"""Explanations: CAM, CRM and the Grad-CAM family for any registered model, overlays, boxes drawn from
heat maps, the explanation panel, and a model's filters and activations."""
