"""Small simulated tomograms (napari sample data for the particle overlay).

Rotation convention: a particle with RELION pose matrix R (its 0° tilt pose; :mod:`tomodrgn.physics.pose`) appears in
the tomogram as its reference volume v rotated so that a reference point y lands at ``R @ y`` (offsets from the
particle centre, (x, y, z) pixels); equivalently the tomogram voxel at offset x takes the value v(Rᵀ x), i.e. the
tomogram frame maps back to the reference frame by the inverse (transpose) of the RELION matrix. The z projection of
the pasted particle is then exactly the 0° tilt image of the forward model (before CTF), because the 0° image frame
is the tomogram frame (the stage tilt rotates about the image/tomogram y axis).

Densities are positive (protein bright), with white gaussian noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc, write_mrc
from tomodrgn.simulate.dataset import SimulatedDataset
from tomodrgn.simulate.phantom import render_particle
from tomodrgn.simulate.presets import get_preset


def rotate_volume(volume: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Volume (D, D, D) [z, y, x] as it appears for pose ``rotation`` (RELION matrix): out(x) = v(Rᵀ x).

    Trilinear interpolation about the centre voxel D/2; zero outside the box.
    """
    d = volume.shape[-1]
    ax = torch.arange(d, dtype=torch.float64) - d // 2
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    pts = torch.stack([x, y, z], dim=-1) @ torch.as_tensor(np.asarray(rotation, dtype=np.float64))  # rows: (Rᵀx)ᵀ
    grid = ((pts + d // 2) * (2.0 / (d - 1)) - 1.0).to(torch.float32)
    vol = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None]
    out = F.grid_sample(vol, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy()


def simulate_tomogram(
    sim: SimulatedDataset,
    tomogram_name: str,
    shape: tuple[int, int, int] | None = None,
    noise: float = 0.15,
    seed: int = 0,
    out_path: str | Path | None = None,
) -> Path:
    """Write a tomogram .mrc (Z, Y, X) with each of ``tomogram_name``'s particles pasted at its coordinates.

    Each particle is its ground-truth volume (its class volume; for ``continuous`` its exact conformation) rotated
    by its pose (see the module docstring). ``shape`` (Z, Y, X) px defaults to the dataset's tomogram shape
    (particles outside a smaller shape are clipped). ``noise``: gaussian noise std as a fraction of the largest
    reference density. Written to ``<dataset>/tomograms/<tomogram_name>.mrc`` unless ``out_path`` is given, with
    the dataset's pixel size. Returns the path.
    """
    truth = np.load(sim.truth_path)
    names = [str(t) for t in truth["tomogram_names"]]
    if tomogram_name not in names:
        raise InputError(f"tomogram {tomogram_name!r} not in {sim.truth_path} (tomograms: {', '.join(names)})")
    shape = tuple(int(s) for s in (truth["tomogram_shape"] if shape is None else shape))
    d = int(truth["box_size"])
    sel = np.flatnonzero(truth["tomogram"] == names.index(tomogram_name))
    class_vols = [read_mrc(p)[0] for p in sim.volume_paths]
    preset = get_preset(str(truth["preset"]))
    continuous = not np.all(truth["offsets"] == 0)
    tomo = np.zeros(shape, dtype=np.float32)
    for i in sel:
        if continuous:
            vol = render_particle(preset.phantom, d, truth["amplitudes"][i], truth["offsets"][i] * d)
        else:
            vol = class_vols[int(truth["label"][i])]
        part = rotate_volume(vol, truth["rotation"][i])
        cx, cy, cz = (int(round(c)) - d // 2 for c in truth["position_px"][i])
        lo = np.array([cz, cy, cx])
        src_lo = np.maximum(0, -lo)
        dst_lo = np.maximum(0, lo)
        dst_hi = np.minimum(np.array(shape), lo + d)
        if np.any(dst_hi <= dst_lo):
            continue
        size = dst_hi - dst_lo
        tomo[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] += part[
            src_lo[0] : src_lo[0] + size[0], src_lo[1] : src_lo[1] + size[1], src_lo[2] : src_lo[2] + size[2]
        ]
    if noise > 0:
        peak = max(float(v.max()) for v in class_vols)
        tomo += np.random.default_rng(seed).normal(0.0, noise * peak, size=shape).astype(np.float32)
    if out_path is None:
        out_path = sim.star_path.parent / "tomograms" / f"{tomogram_name}.mrc"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_mrc(out_path, tomo, sim.pixel_size, is_stack=False)
