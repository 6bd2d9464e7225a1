"""Sample data: a small simulated dataset (core simulator) shown as a tomogram with its particles.

The dataset (4-class preset, 24 particles, D = 16, 5 tilts) and its tomogram are written to a fresh temporary folder
whose path is in each layer's metadata (``star_path``), so the STAR file can be used with the training widget.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from napari_tomodrgn._reader import LayerData, overlay_layers, read_mrc_layer, show_units


def make_sample_data(outdir: str | Path | None = None, n_particles: int = 24, box_size: int = 16) -> list[LayerData]:
    """Simulate a dataset, paste its particles into a tomogram; layers: tomogram Image, particle Points + Vectors.

    Points are coloured by the ground-truth class (``labels``) and carry ``cluster`` in their features.
    """
    from napari_tomodrgn._torch_setup import prepare_torch

    prepare_torch()
    show_units()
    from tomodrgn.api import particle_overlay, read_particles, simulate_tomogram
    from tomodrgn.api import simulate as simulate_dataset

    outdir = Path(tempfile.mkdtemp(prefix="tomodrgn-sample-")) if outdir is None else Path(outdir)
    sim = simulate_dataset(
        outdir, preset="4-class", n_particles=n_particles, box_size=box_size, n_tilts=5, n_tomograms=1, seed=0
    )
    tomo_name = sim.tomogram_names[0]
    tomo_path = simulate_tomogram(sim, tomo_name)
    [(tomo, tomo_meta, _)] = read_mrc_layer(tomo_path)
    tomo_meta.update(name=f"{tomo_name} (simulated)", colormap="gray_r")
    tomo_meta["metadata"]["star_path"] = str(sim.star_path)
    series = read_particles(sim.star_path)
    ov = particle_overlay(series, labels=sim.labels, tomogram=tomo_name, tomogram_pixel_size=sim.pixel_size)
    return [
        (tomo, tomo_meta, "image"),
        *overlay_layers(ov, name=tomo_name, box_size=sim.box_size, star_path=str(sim.star_path), series=series),
    ]
