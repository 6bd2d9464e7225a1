"""tomoDRGN: learning structural heterogeneity from cryo-electron sub-tomogram image series.

The public Python API lives in :mod:`tomodrgn.api`; the CLI (``tomodrgn``) and the napari plugin call only it.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``tomodrgn.RunFolder`` without importing torch (the plugin's file readers ask it of every folder opened)."""
    if name == "RunFolder":
        from tomodrgn.runs.folder import RunFolder

        return RunFolder
    raise AttributeError(f"module 'tomodrgn' has no attribute {name!r}")
