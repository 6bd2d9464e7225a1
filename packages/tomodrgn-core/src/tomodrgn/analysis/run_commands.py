"""Run-level entry points of the analysis commands: load a training run (model, z, pixel size, STAR) and call the
core functions of :mod:`~tomodrgn.analysis.volume_space`, :mod:`~tomodrgn.analysis.traversal` and
:mod:`tomodrgn.export.chimerax`. Output folders default to ``<run>/<command>.<epoch>/``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tomodrgn.analysis.metrics import named_mask
from tomodrgn.analysis.outputs import ANALYZE_VOLUMES, GRAPH_TRAVERSAL, PC_TRAVERSAL, OutputFolder, output_folder
from tomodrgn.analysis.traversal import Traversal, graph_path, graph_traversal_run, pc_traversal_run
from tomodrgn.analysis.volume_space import VolumeSpaceResult, analyze_volumes
from tomodrgn.io.errors import InputError
from tomodrgn.io.index_lists import read_labels, read_values
from tomodrgn.io.output_dir import CommandOutputs, check_output_dir
from tomodrgn.runs.config import TrainConfig, resumed_config
from tomodrgn.runs.folder import RunFolder

if TYPE_CHECKING:
    from tomodrgn.io.particles import ParticleSeries
    from tomodrgn.reconstruct.reference_check import Reference


def load_vae_run(run_dir: str | Path, epoch: int | None = None, device: str = "cpu", flip_hand: bool = False):
    """(TrainedModel, z (n, zdim) of that epoch, epoch) of a VAE run; z from ``z.{epoch}.npy`` (latest if None);
    ``flip_hand``: the model decodes mirrored volumes (:class:`~tomodrgn.runs.trained.TrainedModel`)."""
    from tomodrgn.runs.trained import load_model

    run_dir = Path(run_dir)
    z, epoch = RunFolder(run_dir).load_z(epoch)
    model = load_model(run_dir, epoch, device, flip_hand=flip_hand)
    if model.zdim == 0:
        raise InputError(f"{run_dir} is a homogeneous run (no latent space)")
    return model, z, epoch


def _out(run_dir: Path, outdir, outputs: CommandOutputs, epoch, overwrite: bool, inputs=()) -> OutputFolder:
    """The command's output folder, ``outdir`` or its default ``<run>/<command>.<epoch>`` (``epoch`` None: that of
    the run's latest z), checked before any work (:func:`~tomodrgn.analysis.outputs.output_folder`: a used folder
    needs ``overwrite``)."""
    if outdir is not None:
        return output_folder(outdir, True, outputs, overwrite, inputs)
    _, epoch = RunFolder(run_dir).load_z(epoch)
    return output_folder(RunFolder(run_dir).output(outputs.command, epoch), False, outputs, overwrite, inputs)


def analyze_volumes_run(
    run_dir: str | Path,
    epoch: int | None = None,
    outdir: str | Path | None = None,
    mask: str | Path | None = "auto",
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    flip_hand: bool = False,
    resume: bool = False,
    **kwargs,
) -> VolumeSpaceResult:
    """:func:`~tomodrgn.analysis.volume_space.analyze_volumes` of a run; ``mask`` an MRC path, ``"auto"``, None, or
    ``"sphere"`` / ``"tight"`` (:func:`~tomodrgn.analysis.metrics.named_mask` of the map at the mean z);
    the per-cluster STAR subsets are written when the run's training STAR is readable. ``flip_hand``: mirrored
    volumes (a ``mask`` file must then be in the mirrored hand too). ``resume``: continue an interrupted call in the
    same folder, keeping the volumes it decoded from the same run, epoch and hand; ``overwrite``: remove what an
    earlier call wrote there first (not both)."""
    from tomodrgn.io.mrc import read_mrc
    from tomodrgn.runs.particles import training_particles

    if resume and overwrite:
        raise InputError("give --resume or --overwrite, not both")
    mask_file = [] if mask is None or str(mask) in ("auto", "sphere", "tight") else [mask]
    inputs = [] if resume else [*(kwargs.get("volume_paths") or []), *mask_file]  # what --overwrite must keep
    folder = _out(Path(run_dir), outdir, ANALYZE_VOLUMES, epoch, overwrite or resume, inputs)
    model, z, epoch = load_vae_run(run_dir, epoch, device, flip_hand)
    m = mask
    if str(mask) in ("sphere", "tight"):
        m = named_mask(str(mask), model.decode(np.asarray(z).mean(0, keepdims=True))[0])  # the map at the mean z
    elif mask is not None and str(mask) != "auto":
        m, _ = read_mrc(mask)
    star = model.metadata.get("star_path")
    series = None
    if star is not None and Path(star).exists():
        series = training_particles(model)  # restricted to the run's --first / --ind particles
        if series.n_particles != len(z):
            series = None
    out = folder.path if resume else folder.prepare()  # --resume keeps what is there
    source = {"run": str(Path(run_dir).absolute()), "epoch": epoch, "flip_hand": flip_hand}
    return analyze_volumes(
        model.decode, z, out, model.pixel_size, mask=m, star=series, progress=progress, resume=resume, source=source,
        **kwargs,
    )  # fmt: skip


def pc_traversal_for_run(
    run_dir: str | Path,
    epoch: int | None = None,
    outdir: str | Path | None = None,
    pcs: Sequence[int] = (1, 2),
    n_points: int = 10,
    lo_percentile: float = 5.0,
    hi_percentile: float = 95.0,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    flip_hand: bool = False,
) -> dict[int, Traversal]:
    """Volumes along latent PCs of a run (``<out>/pcN/vol_NNN.mrc``, ``z_values.txt``, ``path.png``);
    ``flip_hand``: mirrored volumes."""
    folder = _out(Path(run_dir), outdir, PC_TRAVERSAL, epoch, overwrite)
    model, z, epoch = load_vae_run(run_dir, epoch, device, flip_hand)
    missing = [pc for pc in pcs if not 1 <= pc <= min(np.shape(z))]
    if missing:  # before --overwrite removes anything
        raise InputError(f"PC{missing[0]} does not exist: z has {min(np.shape(z))} principal components")
    out = folder.prepare()
    return pc_traversal_run(
        model.decode, z, out, model.pixel_size, pcs, n_points, lo_percentile, hi_percentile, progress
    )


def graph_traversal_for_run(
    run_dir: str | Path,
    anchors: Sequence[int],
    epoch: int | None = None,
    outdir: str | Path | None = None,
    k: int = 10,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    flip_hand: bool = False,
) -> Traversal:
    """Volumes along the k-NN-graph shortest path in z through particles ``anchors`` (0-based, STAR order);
    ``flip_hand``: mirrored volumes."""
    folder = _out(Path(run_dir), outdir, GRAPH_TRAVERSAL, epoch, overwrite)
    model, z, epoch = load_vae_run(run_dir, epoch, device, flip_hand)
    path = graph_path(z, anchors, k)  # a path that cannot be found fails before --overwrite removes anything
    out = folder.prepare()
    return graph_traversal_run(model.decode, z, anchors, out, model.pixel_size, k, progress, path)


def reference_for_training(
    star: str | Path, config: TrainConfig, reference: Reference, resume_dir: str | Path | None = None
) -> tuple[ParticleSeries, Reference]:
    """(the particles of ``star`` read as training reads them, ``reference`` with its pixel size decided against the
    training grid): so that a reference that cannot be compared with the run's map is refused before training,
    not after it, and its warnings come first (:func:`~tomodrgn.reconstruct.reference_check.resolve_reference`).
    ``resume_dir``: the run being resumed, whose saved settings apply. Give the particles to
    :func:`~tomodrgn.training.loop.train`, so they are read once."""
    from tomodrgn.reconstruct.reference_check import resolve_reference
    from tomodrgn.runs.model import read_training_series, training_grid

    if resume_dir is not None and RunFolder(resume_dir).config.is_file():
        config = resumed_config(TrainConfig.load(RunFolder(resume_dir).config), config)
    series = read_training_series(star, config)
    return series, resolve_reference(reference, *training_grid(series, config))


def check_run_against_reference(
    run_dir: str | Path,
    reference: str | Path | Reference,
    epoch: int | None = None,
    reference_pixel_size: float | None = None,
    device: str = "cpu",
):
    """The hand and contrast check of a run's map against the user's ``reference`` map
    (:func:`~tomodrgn.reconstruct.reference_check.check_against_reference`), written to ``<run>/reference_check.txt``
    (``reference_check.<epoch>.txt`` for an earlier epoch). The map: a homogeneous run's; for a VAE run the volume
    of the particle whose z is nearest the mean z. Returns the :class:`ReferenceCheck`."""
    from tomodrgn.reconstruct.reference_check import check_against_reference, write_reference_check
    from tomodrgn.runs.trained import load_model

    run_dir = Path(run_dir)
    model = load_model(run_dir, epoch, device)
    if model.zdim == 0:
        vol = model.decode(None)[0]
    else:
        z, _ = RunFolder(run_dir).load_z(epoch)
        centre = z[np.argmin(np.linalg.norm(z - z.mean(axis=0), axis=1))]
        vol = model.decode(centre[None])[0]
    check = check_against_reference(
        vol, model.pixel_size, reference, reference_pixel_size=reference_pixel_size, invert=model.config.invert
    )
    write_reference_check(RunFolder(run_dir).reference_check(None if epoch is None else model.epoch), check)
    return check


def _per_particle_values(color_by: str, z: np.ndarray | None, n: int) -> np.ndarray:
    if color_by.lower().startswith("pc") and color_by[2:].isdigit():
        if z is None:
            raise InputError(f"--color-by {color_by} needs a training run (latent z)")
        from tomodrgn.analysis.latent import pca

        pc = int(color_by[2:])
        coords = pca(z).coords
        if not 1 <= pc <= coords.shape[1]:
            raise InputError(f"--color-by {color_by}: z has {coords.shape[1]} principal components")
        return coords[:, pc - 1]
    path = Path(color_by)
    if not path.exists():
        raise InputError(f"--color-by {color_by}: neither PCn nor an existing .npy/.txt file of per-particle values")
    values = read_values(path)
    if np.shape(values) != (n,):
        raise InputError(f"--color-by {path}: {np.size(values)} values for {n} particles")
    return np.asarray(values, dtype=np.float64)


def subtomo2chimerax(
    outdir: str | Path,
    run_dir: str | Path | None = None,
    star: str | Path | None = None,
    epoch: int | None = None,
    labels: str | Path | np.ndarray | None = None,
    volumes: Sequence[str | Path] | None = None,
    color_by: str | None = None,
    level: float | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """ChimeraX scripts (one ``<tomogram>.cxc`` per tomogram) placing a volume at each particle's position and pose.

    Per cluster: ``labels`` (n,) (array, ``.npy`` or index-per-line text) and ``volumes`` (one MRC per label value,
    label c → ``volumes[c]``). Per particle (no ``volumes``): each particle's own z of ``run_dir`` is decoded into
    ``outdir/volumes/particle_NNNNN.mrc``. Colours: by label, or ``color_by`` (``PCn`` of z, or a .npy/.txt of
    per-particle values) on viridis. ``star`` defaults to the run's training STAR (positions in Å). ``outdir`` must
    be new or empty unless ``overwrite``. No ``flip_hand`` here: the poses place maps of the particles' own hand
    into their tomograms, and a mirrored map at the same pose would sit wrongly.
    """
    from tomodrgn.analysis.spatial import particle_poses, particle_positions
    from tomodrgn.export.chimerax import quantity_colors, write_chimerax_scripts
    from tomodrgn.io.mrc import mrc_pixel_size, read_mrc, write_mrc
    from tomodrgn.io.particles import read_particles
    from tomodrgn.runs.particles import training_particles

    out = check_output_dir(outdir, overwrite, what="output folder")
    model = z = None
    tomograms_star = None
    if run_dir is not None:
        model, z, epoch = load_vae_run(run_dir, epoch, device)
    if star is not None:
        series = read_particles(star, tomograms_star=tomograms_star, ctf="unused", dose="unused")  # positions only
    elif model is not None:
        series = training_particles(model)  # the run's training particles (its --first / --ind selection)
        star = series.star_path
    else:
        raise InputError("subtomo2chimerax needs --star (or a training run that records its STAR)")
    n = series.n_particles
    tomos, pos = particle_positions(series)
    rots = particle_poses(series)
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (n,):
            raise InputError(f"{len(labels)} labels for the {n} particles of {star}")
    if volumes is not None:
        if labels is None:
            raise InputError("per-cluster volumes need --labels (one cluster label per particle)")
        if labels.max() >= len(volumes):
            raise InputError(f"label {labels.max()} has no volume: {len(volumes)} volumes given")
        paths = [Path(volumes[c]).resolve() for c in labels]
        pixel_size = mrc_pixel_size(paths[0])
        box = read_mrc(paths[0])[0].shape[0]
    else:
        if model is None:
            raise InputError("give --volumes with --labels, or a training run to decode one volume per particle")
        if len(z) != n:
            raise InputError(f"{star} has {n} particles but the run's z has {len(z)}")
        pixel_size, box = model.pixel_size, model.box_size
        paths = []
        (out / "volumes").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = out / "volumes" / f"particle_{i:05d}.mrc"
            paths.append(write_mrc(p, model.decode(z[i][None])[0], pixel_size).resolve())
            if progress is not None:
                progress(i + 1, n)
    colors = None if color_by is None else quantity_colors(_per_particle_values(color_by, z, n))
    return write_chimerax_scripts(out, paths, pos, rots, tomos, box, pixel_size, labels, level, colors)


def decode_volumes(
    run_dir: str | Path,
    z: np.ndarray | None,
    outdir: str | Path,
    epoch: int | None = None,
    prefix: str = "vol_",
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    flip_hand: bool = False,
    box_size: int | None = None,
    lowpass: float | None = None,
    invert: bool = False,
) -> list[Path]:
    """Decode one volume per row of ``z`` (n, zdim) (None for a homogeneous run) and write ``<prefix>NNN.mrc``
    files (D³, the training pixel size) into ``outdir`` (new or empty unless ``overwrite``); returns their paths.
    ``flip_hand``: write them mirrored (``docs/architecture.md``, "Hand"). Each volume is then Fourier-cropped to
    ``box_size`` px (the pixel size grows by D / box_size), low-passed to ``lowpass`` Å and negated with ``invert``
    (:func:`postprocess_volume`)."""
    from tomodrgn.io.mrc import write_mrc
    from tomodrgn.io.output_dir import prepare_output_dir
    from tomodrgn.runs.trained import load_model

    check_output_dir(outdir, overwrite)
    model = load_model(run_dir, epoch, device=device, flip_hand=flip_hand)
    outdir = prepare_output_dir(outdir, overwrite)
    n = 1 if z is None else int(np.atleast_2d(z).shape[0])
    paths = []
    for i, vol in enumerate(model.iter_decode(z)):
        vol, px = postprocess_volume(np.asarray(vol, np.float32), model.pixel_size, box_size, lowpass, invert)
        paths.append(write_mrc(outdir / f"{prefix}{i:03d}.mrc", vol, px))
        if progress is not None:
            progress(i + 1, n)
    return paths


def postprocess_volume(
    vol: np.ndarray, pixel_size: float, box_size: int | None = None, lowpass: float | None = None, invert: bool = False
) -> tuple[np.ndarray, float]:
    """(volume, pixel size Å) of a decoded volume Fourier-cropped to ``box_size`` px, low-passed to ``lowpass`` Å
    (raised-cosine edge, :func:`~tomodrgn.reconstruct.backproject.lowpass_volume`) and negated with ``invert``."""
    from tomodrgn.physics.hartley import fourier_crop
    from tomodrgn.reconstruct.backproject import lowpass_volume

    d = vol.shape[-1]
    if box_size is not None and box_size != d:
        vol, pixel_size = np.asarray(fourier_crop(vol, box_size, ndim=3), np.float32), pixel_size * d / box_size
    if lowpass is not None:
        if lowpass <= 0:
            raise InputError(f"--lowpass must be > 0 Å, got {lowpass}")
        vol = lowpass_volume(vol, pixel_size, lowpass)
    return (-vol if invert else vol), pixel_size


def embed_particles(
    run_dir: str | Path,
    star=None,
    n_tilts: int | None = None,
    epoch: int | None = None,
    sequential: bool = True,
    device: str = "cpu",
    first: int | None = None,
    ind: str | Path | np.ndarray | None = None,
    tomograms_star: str | Path | None = None,
    datadir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent (μ, log σ²) of every particle of ``star`` (a STAR path or a ParticleSeries; default: the run's
    training particles, its ``--first`` / ``--ind`` selection applied), from ``n_tilts`` tilts each (default: all
    tilts when the run wrote all-tilt latents, else the training value; see ``TrainedModel.embed``). ``first`` /
    ``ind``: a subset (:func:`tomodrgn.io.selection.select_particles`). ``tomograms_star``: the tomograms STAR of a
    2-D stack set given by its particles STAR ``star`` (the training STAR, given again, is read with the run's, and
    with the run's ``datadir`` unless ``datadir`` is given: the folder the STAR's image paths are relative to)."""
    from tomodrgn.io.particles import ParticleSeries
    from tomodrgn.io.selection import read_particles_checked, select_particles
    from tomodrgn.runs.particles import training_particles
    from tomodrgn.runs.trained import load_model

    if n_tilts is not None and (isinstance(n_tilts, bool) or n_tilts < 1):
        raise InputError(f"--n-tilts must be ≥ 1, got {n_tilts}")
    model = load_model(run_dir, epoch, device=device)
    if star is None:
        star = training_particles(model)
    elif not isinstance(star, ParticleSeries):
        trained_on = model.metadata.get("star_path")
        if trained_on and Path(star).absolute() == Path(trained_on).absolute():
            tomograms_star = tomograms_star if tomograms_star is not None else model.config.tomograms_star
            datadir = datadir if datadir is not None else model.config.datadir
        star = read_particles_checked(star, pixel_size=model.config.pixel_size, tomograms_star=tomograms_star,
                                      datadir=datadir, ctf="auto" if model.config.ctf else "none")  # fmt: skip
    return model.embed(select_particles(star, first=first, ind=ind), n_tilts=n_tilts, sequential=sequential)


def tomodrgn_mapback(
    star: str | Path,
    outdir: str | Path,
    mode: str = "markers",
    tomogram: str | None = None,
    tomogram_column: str | None = None,
    star_pixel_size: float | None = None,
    indices: str | Path | None = None,
    run: str | Path | None = None,
    epoch: int | None = None,
    volume: str | Path | None = None,
    labels: str | Path | None = None,
    colormap: str | None = None,
    level: float | None = None,
    marker_radius: float = 100.0,
    device: str = "cpu",
    overwrite: bool = False,
) -> list[Path]:
    """The published tomoDRGN's ``subtomo2chimerax``: ``<outdir>/tomo_<name>/mapback.cxc`` per tomogram placing, at
    each particle of ``star`` (:func:`_mapback_particles`), a marker (``mode`` "markers", ``marker_radius`` Å), the
    one map ``volume`` ("volume"), or its own volume decoded from ``run``'s z at ``epoch`` ("volumes", written beside
    the script). ``tomogram``: that tomogram only; ``indices``: an index list of the particles used; ``labels``
    colour the particles on ``colormap`` (a matplotlib name; default tab10)."""
    from tomodrgn.export.chimerax import chimerax_script, marker_script
    from tomodrgn.io.index_lists import read_index_list
    from tomodrgn.io.mrc import mrc_pixel_size, read_mrc, write_mrc

    out = check_output_dir(outdir, overwrite, what="--outdir")
    tomos, pos, rots = _mapback_particles(star, star_pixel_size, tomogram_column)
    rows = np.arange(len(pos)) if indices is None else read_index_list(indices)
    colors = None if labels is None else _label_colors(labels, len(pos), colormap, star)
    z = model = None
    if mode == "volumes":
        if run is None:
            raise InputError("--mode volumes needs --weights / --config / --zfile of a training run")
        model, z, epoch = load_vae_run(run, epoch, device)
        if len(z) != len(pos):
            raise InputError(f"{star} has {len(pos)} particles but the run's z has {len(z)}")
    elif mode == "volume" and volume is None:
        raise InputError("--mode volume needs --vol-path, the map placed at every particle")
    names = [str(t) for t in dict.fromkeys(tomos[rows])]
    if tomogram is not None:
        if tomogram not in names:
            raise InputError(f"--tomoname {tomogram}: not in {star} (tomograms: {', '.join(names[:5])})")
        names = [tomogram]
    written = []
    for name in names:
        idx = rows[tomos[rows] == name]
        folder = out / f"tomo_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        some = None if colors is None else [colors[i] for i in idx]
        if mode == "markers":
            text = marker_script(pos[idx], marker_radius, some)
        elif mode == "volume":
            paths = [Path(volume).resolve()] * len(idx)
            text = chimerax_script(paths, pos[idx], rots[idx], read_mrc(volume)[0].shape[0], mrc_pixel_size(volume),
                                   level=level, colors=some)  # fmt: skip
        else:
            paths = [write_mrc(folder / f"vol_{j:03d}.mrc", model.decode(z[i][None])[0], model.pixel_size).name
                     for j, i in enumerate(idx)]  # fmt: skip
            text = chimerax_script(paths, pos[idx], rots[idx], model.box_size, model.pixel_size, level=level,
                                   colors=some)  # fmt: skip
        written.append(folder / "mapback.cxc")
        written[-1].write_text(text)
    return written


def _mapback_particles(
    star: str | Path, star_pixel_size: float | None, tomogram_column: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tomogram (n,), position (n, 3) Å, pose (n, 3, 3)) of each particle of a particle STAR or optimisation set we
    read, else of each row of a volume-series STAR whose coordinates are in pixels of ``star_pixel_size`` Å."""
    from tomodrgn.analysis.spatial import particle_poses, particle_positions
    from tomodrgn.io.particles import read_particles
    from tomodrgn.io.volume_series import read_volume_series

    try:
        series = read_particles(star, ctf="unused", dose="unused")  # positions and poses only
        tomos, pos = particle_positions(series)
    except InputError:
        if star_pixel_size is None:
            raise InputError(f"{star}: give --star-angpix-override, the pixel size (Å) of its coordinates") from None
        return read_volume_series(star, star_pixel_size, tomogram_column or "rlnMicrographName")
    if star_pixel_size is not None:
        message = f"{star}: positions from its own pixel sizes; the coordinates' pixel size given is for volume series"
        warnings.warn(message, UserWarning, stacklevel=3)
    return tomos, pos, particle_poses(series)


def _label_colors(labels: str | Path, n: int, colormap: str | None, star) -> list[str]:
    """A hex colour per particle from its label: label c → colour c of a qualitative map (cycled), or c / max on a
    continuous one."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    values = read_labels(labels)
    if len(values) != n:
        raise InputError(f"{labels}: {len(values)} labels for the {n} particles of {star}")
    name = colormap or "tab10"
    if name not in colormaps:
        raise InputError(f"--colormap {name}: not a matplotlib colour map (e.g. tab10, tab20, viridis)")
    cmap = colormaps[name]
    if cmap.N < 256:
        return [to_hex(cmap(int(v) % cmap.N)) for v in values]
    return [to_hex(cmap(float(v) / max(1, int(values.max())))) for v in values]
