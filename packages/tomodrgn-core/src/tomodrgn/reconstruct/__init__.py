"""Direct reconstruction from particle tilt images: weighted back-projection (``tomodrgn backproject``)."""
