"""Fixtures for the napari plugin tests: tiny real files on disk (MRC volumes, a Warp-style particle STAR).

Viewer tests use napari's ``make_napari_viewer`` fixture (pytest plugin shipped with napari) under Xvfb
(``pytest-xvfb`` starts it when ``xvfb`` is installed; see ``.ci/install-gui-deps.sh``).

napari's DeprecationWarning and FutureWarning are errors in these tests (:data:`NAPARI_DEPRECATIONS_AS_ERRORS`,
added to every test collected under this folder): the plugin must use only napari's public, non-deprecated API.
napari attributes a deprecation to the code that calls the deprecated API (or to its caller: its warnings'
``stacklevel``), so the filters match warnings attributed to napari itself, to the plugin (``napari_tomodrgn``) and
to these tests, and napari's messages for deprecated ``Viewer`` attributes and private attribute access wherever they
are attributed; other libraries' own deprecations (pydantic, npe2, vispy, numpy, …, attributed to their modules) stay
warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from tomodrgn.io.mrc import write_mrc
from tomodrgn.physics.pose import euler_to_matrix, matrix_to_euler, tilt_about_y

HERE = Path(__file__).resolve().parent
# pytest "action:message:category:module" filters (message and module: regexes matched at the start)
NAPARI_DEPRECATIONS_AS_ERRORS = (
    # attributed to napari.*, the plugin (napari_tomodrgn.*) or these tests (test_*.py, conftest.py)
    r"error::DeprecationWarning:(napari|test_|conftest)",
    r"error::FutureWarning:(napari|test_|conftest)",
    # napari's deprecated Viewer attributes (viewer.scale_bar, …) and private attributes through the proxy napari
    # gives plugin widgets, wherever they are attributed (napari 0.9 attributes viewer.scale_bar to the caller of
    # the code that reads it, which can be a library calling back into the plugin)
    r"error:viewer\.\w+ is a deprecated attribute:DeprecationWarning",
    r"error:Private attribute access:FutureWarning",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """napari's deprecations as errors in the plugin tests (only these: conftest hooks see the whole session).

    Added first, so a test's own ``filterwarnings`` mark (applied after it) can still relax it.
    """
    mark = pytest.mark.filterwarnings(*NAPARI_DEPRECATIONS_AS_ERRORS)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(mark, append=False)


# Euler angles (rot, tilt, psi) in degrees of the particles in the tiny STAR file
EULERS = np.array([[0.0, 0.0, 0.0], [0.0, 90.0, 0.0], [0.0, 90.0, 90.0], [30.0, 45.0, -60.0], [120.0, 150.0, 10.0]])
TILTS = np.array([0.0, 3.0, -3.0])  # degrees, acquisition order (dose-symmetric start)


@dataclass
class TinyStar:
    star: Path
    pixel_size: float  # Å of the stacks
    tomogram_pixel_size: float  # Å per unit of _rlnCoordinateX/Y/Z
    coords_px: np.ndarray  # (n, 3) x, y, z in tomogram pixels
    eulers: np.ndarray  # (n, 3) pose of the 0° image
    tomograms: list[str]


def write_tiny_star(folder: Path, box: int = 8, seed: int = 0) -> TinyStar:
    """A Warp/M image-series STAR with len(EULERS) particles × 3 tilts, one stack, positions and two tomograms.

    The 0° image of each particle carries the pose EULERS[i]; the ±3° images carry tilt_about_y(t) @ A (so a
    reader that picked a tilted image would get a different direction). Rows are written tilted image first.
    """
    rng = np.random.default_rng(seed)
    n = len(EULERS)
    ps, tomo_ps = 2.0, 8.0
    order = [1, 0, 2]  # file order of the tilts: +3°, 0°, −3°
    stack = rng.normal(size=(n * len(TILTS), box, box)).astype(np.float32)
    write_mrc(folder / "stack.mrcs", stack, pixel_size=ps)
    coords = np.array([[10.0, 20.0, 5.0], [30.0, 12.0, 7.0], [4.0, 40.0, 9.0], [22.0, 22.0, 3.0], [15.0, 5.0, 11.0]])
    tomos = ["tomoA", "tomoA", "tomoB", "tomoB", "tomoB"]
    rows = []
    for i in range(n):
        a0 = euler_to_matrix(*EULERS[i])
        for j in order:
            rot, tilt, psi = matrix_to_euler(tilt_about_y(np.float64(TILTS[j])) @ a0)
            rows.append(
                {
                    "rlnImageName": f"{len(rows) + 1}@stack.mrcs",
                    "rlnGroupName": f"{tomos[i]}_{i:03d}",
                    "rlnMicrographName": tomos[i],
                    "rlnAngleRot": float(rot),
                    "rlnAngleTilt": float(tilt),
                    "rlnAnglePsi": float(psi),
                    "rlnOriginXAngst": 0.0,
                    "rlnOriginYAngst": 0.0,
                    "rlnDefocusU": 20000.0,
                    "rlnDefocusV": 20000.0,
                    "rlnDefocusAngle": 0.0,
                    "rlnVoltage": 300.0,
                    "rlnSphericalAberration": 2.7,
                    "rlnAmplitudeContrast": 0.1,
                    "rlnCtfBfactor": -4.0 * 3.0 * (j + 1),
                    "rlnCtfScalefactor": float(np.cos(np.deg2rad(TILTS[j]))),
                    "rlnCoordinateX": coords[i, 0],
                    "rlnCoordinateY": coords[i, 1],
                    "rlnCoordinateZ": coords[i, 2],
                    "rlnImagePixelSize": ps,
                }
            )
    star = folder / "particles.star"
    starfile.write({"particles": pd.DataFrame(rows)}, star, overwrite=True)
    return TinyStar(star, ps, tomo_ps, coords, EULERS.copy(), tomos)


@pytest.fixture
def tiny_star(tmp_path: Path) -> TinyStar:
    return write_tiny_star(tmp_path)


@pytest.fixture
def tiny_volume(tmp_path: Path) -> tuple[Path, np.ndarray, float]:
    """A (6, 8, 10) volume with voxel size 3.5 Å written as .mrc."""
    data = np.random.default_rng(1).normal(size=(6, 8, 10)).astype(np.float32)
    path = write_mrc(tmp_path / "vol.mrc", data, pixel_size=3.5)
    return path, data, 3.5


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory):
    """A tiny simulated 4-class dataset (core simulator): 12 particles, D = 16, 5 tilts, one tomogram."""
    from napari_tomodrgn._torch_setup import prepare_torch
    from tomodrgn.simulate.dataset import simulate_dataset

    prepare_torch()  # as the plugin does: never import triton after Mesa OpenGL is loaded (process crash)
    return simulate_dataset(
        tmp_path_factory.mktemp("sim"), preset="4-class", n_particles=12, box_size=16, n_tilts=5, seed=0
    )


def tiny_config(**kw):
    """A TrainConfig small enough to train in seconds on CPU."""
    from tomodrgn.runs.config import TrainConfig

    base = dict(
        mode="vae", zdim=2, enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="16x1", epochs=2,
        batch_size=4, device="cpu", backend="torch", checkpoint_every=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, sim_dataset):
    """A run folder trained (core iter_train) for 2 epochs on the simulated dataset."""
    from napari_tomodrgn._torch_setup import prepare_torch
    from tomodrgn.training.loop import iter_train

    prepare_torch()  # as the plugin does: never import triton after Mesa OpenGL is loaded (process crash)
    run = tmp_path_factory.mktemp("run")
    for _ in iter_train(sim_dataset.star_path, run, tiny_config()):
        pass
    return run
