"""napari reader: MRC volumes/stacks, STAR particle files (→ Points + Vectors) and tomoDRGN run folders.

World coordinates are Å everywhere: an MRC layer gets its voxel size (Å) as scale, and particle points are given in
voxels of the STAR's pixel size with that pixel size as scale, so a tomogram and its particles line up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict, str]
UNITS = {"units": ("angstrom",) * 3, "axis_labels": ("z", "y", "x")}
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".map")
STAR_SUFFIXES = (".star",)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read` if every path is an MRC file, a STAR file, a folder holding such files or a run's
    checkpoint ``weights*.pt`` (opens its run folder), else None.

    Opening a folder, napari asks which reader to use (its built-in reader accepts every folder too); opening a
    run's ``weights.pt`` is unambiguous (no other reader claims ``*.pt``).
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths:
        return None
    for p in map(Path, paths):
        if _is_checkpoint(p):
            continue
        if p.is_dir():
            if not _folder_files(p) and not is_run_folder(p):
                return None
        elif p.suffix.lower() not in MRC_SUFFIXES + STAR_SUFFIXES:
            return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """Layer data for each path (a folder contributes its MRC volumes and STAR particle files).

    Also turns on the Å scale bar and z/y/x axis names of the current viewer (:func:`_view.setup_viewer`).
    """
    show_units()
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for p in map(Path, paths):
        if _is_checkpoint(p):
            layers.extend(read_run_folder(p.parent))
            continue
        if p.is_dir() and is_run_folder(p):
            layers.extend(read_run_folder(p))
        files = _folder_files(p) if p.is_dir() else [p]
        for f in files:
            layers.extend(read_mrc_layer(f) if f.suffix.lower() in MRC_SUFFIXES else read_star_layers(f))
    return layers


def show_units() -> None:
    """Scale bar (Å, from the layers' units) and z/y/x axis names in the current napari viewer, if there is one."""
    try:
        import napari

        from napari_tomodrgn._view import setup_viewer

        viewer = napari.current_viewer()
    except ImportError:
        return
    if viewer is not None:
        setup_viewer(viewer)


def _is_checkpoint(path: Path) -> bool:
    return path.is_file() and path.suffix == ".pt" and path.name.startswith("weights") and is_run_folder(path.parent)


def is_run_folder(folder: Path) -> bool:
    """A tomoDRGN training run folder: its config and a latest checkpoint (``tomodrgn.RunFolder``, torch-free)."""
    from tomodrgn import RunFolder

    return RunFolder(folder).is_run()


def read_run_folder(folder: Path, k: int = 8) -> list[LayerData]:
    """Latest checkpoint of a run: its volume at the mean z, and the training particles coloured by k-means of z."""
    from napari_tomodrgn._run import load_run
    from tomodrgn.api import kmeans, particle_overlay

    run = load_run(folder)
    ps = run.pixel_size
    vol_meta = {
        "name": f"{folder.name} volume (epoch {run.model.epoch})",
        "scale": (ps, ps, ps),
        **UNITS,
        "metadata": {"path": str(folder), "pixel_size": ps, "epoch": run.model.epoch, "tomodrgn_decoded": True},
    }
    layers: list[LayerData] = [(run.mean_volume(), vol_meta, "image")]
    if run.series.position is not None:
        labels = None if run.z is None else kmeans(run.z, min(k, len(run.z)))[0]
        ov = particle_overlay(run.series, labels=labels)
        star = run.series.star_path
        layers += overlay_layers(ov, name=folder.name, box_size=run.series.box_size, star_path=str(star),
                                 series=run.series)  # fmt: skip
    return layers


def _folder_files(folder: Path) -> list[Path]:
    """MRC and STAR files directly in ``folder`` and in its analysis subfolders (``analyze.N/``, as the core writes
    them, or ``analysis*``), sorted."""
    from tomodrgn import RunFolder

    found = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in MRC_SUFFIXES + STAR_SUFFIXES]
    for sub in RunFolder(folder).analysis_folders():
        found += [f for f in sorted(sub.rglob("*")) if f.is_file() and f.suffix.lower() in MRC_SUFFIXES]
    return found


def read_mrc_layer(path: Path) -> list[LayerData]:
    """One Image layer; scale = voxel size (Å), axes z, y, x in Å.

    A ``.mrcs`` image stack also gets the pixel size on its image axis (one image = one voxel-thick slice), so next to
    a tomogram the z slider keeps voxel-sized steps (with scale 1 it fell to 1-Å steps); ``metadata['stack']`` marks it.
    """
    from tomodrgn.api import read_mrc

    data, pixel_size = read_mrc(path)
    ps = round(pixel_size, 5) if pixel_size > 0 else 1.0  # header voxel sizes are float32
    stack = data.ndim == 3 and path.suffix.lower() == ".mrcs"
    meta = {
        "name": path.stem,
        "scale": (ps,) * data.ndim,
        "metadata": {"path": str(path), "pixel_size": ps, "stack": stack},
    }
    if data.ndim == 3:
        meta.update(UNITS, axis_labels=("image", "y", "x") if stack else UNITS["axis_labels"])
    return [(data, meta, "image")]


def read_star_layers(path: Path) -> list[LayerData]:
    """Points (particle positions) + Vectors (reference z axis) for a STAR file with positions; else no layer."""
    from tomodrgn.api import particle_overlay, read_particles

    series = read_particles(path)
    if getattr(series, "position", None) is None:
        return []
    ov = particle_overlay(series)
    return overlay_layers(ov, name=path.stem, box_size=series.box_size, star_path=str(path), series=series)


def overlay_layers(ov: Any, *, name: str, box_size: int, star_path: str, series: Any) -> list[LayerData]:
    """Points + Vectors layer data for a :class:`~tomodrgn.analysis.overlay.ParticleOverlay` (scale = pixel size)."""
    scale = (ov.pixel_size,) * 3
    names = np.asarray(series.particle_names, dtype=object)[ov.particle_indices]
    features = {"particle": ov.particle_indices, "name": names.astype(str)}
    if ov.labels is not None:
        features["cluster"] = ov.labels
        colors = np.asarray(ov.colors, dtype=float).copy()
    else:  # no clusters: one colour that stands out on a grey tomogram
        colors = np.tile([1.0, 0.85, 0.1, 1.0], (len(ov.positions), 1))
    meta = {"star_path": star_path, "pixel_size": ov.pixel_size}
    box_vox = box_size * series.pixel_size / ov.pixel_size  # particle box edge in tomogram voxels
    size = max(box_vox / 4, 2.0)  # small: the particle itself stays visible under its point
    stem = name if name.lower().endswith("particles") else f"{name} particles"
    points = (
        ov.positions,
        {
            "name": stem,
            "scale": scale,
            "size": size,
            "face_color": colors,
            "border_color": colors,
            "opacity": 0.6,
            "features": features,
            "metadata": meta,
            **UNITS,
        },
        "points",
    )
    vectors = (
        ov.vectors(length=max(box_vox / 2, 2 * size)),
        {
            "name": f"{name} directions",
            "scale": scale,
            "edge_width": 1.0,
            "edge_color": colors,
            "opacity": 0.8,
            "metadata": meta,
            **UNITS,
        },
        "vectors",
    )
    return [points, vectors]
