"""tomoDRGN: learning structural heterogeneity from cryo-electron sub-tomogram image series.

The public Python API lives in :mod:`tomodrgn.api`; the CLI (``tomodrgn``) and the napari plugin call only it.
"""

__version__ = "0.1.0"
