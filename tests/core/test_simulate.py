"""Ground-truth simulator: phantoms, STAR/MRC outputs, forward-model consistency with the reader/decoder convention."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import starfile
import torch
import torch.nn.functional as F

from tomodrgn.physics.ctf import compute_ctf
from tomodrgn.physics.dose import dose_weights
from tomodrgn.physics.hartley import ht2_center, ht3_center, symmetrize_ht
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import euler_to_matrix, tilt_about_y, translate_hartley
from tomodrgn.physics.tilt_scheme import dose_symmetric
from tomodrgn.simulate import simulate_dataset, simulate_tomogram
from tomodrgn.simulate.forward import central_slices, filtered_images, half_grid, volume_spectra
from tomodrgn.simulate.presets import N_CONTINUOUS_BINS, get_preset

PARTICLE_COLUMNS = [
    "rlnImageName", "rlnGroupName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
    "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
    "rlnCtfScalefactor", "rlnOpticsGroup", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ",
]  # fmt: skip
OPTICS_COLUMNS = [
    "rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize", "rlnVoltage", "rlnSphericalAberration",
    "rlnAmplitudeContrast", "rlnImageDimensionality",
]  # fmt: skip


def _read_stack_image(star_dir, image_name: str) -> np.ndarray:
    idx, path = image_name.split("@")
    return mrcfile.read(star_dir / path)[int(idx) - 1]


def _dtft(vol: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact discrete-time FT of vol [z, y, x] (origin at voxel D/2) at points q (P, 3) (x, y, z) cycles/pixel."""
    ax = np.arange(vol.shape[-1]) - vol.shape[-1] // 2
    ex, ey, ez = (np.exp(-2j * np.pi * q[:, i, None] * ax) for i in range(3))
    t = np.einsum("px,zyx->pzy", ex, vol)
    t = np.einsum("py,pzy->pz", ey, t)
    return np.einsum("pz,pz->p", ez, t)


def _ht3_slice(vol: np.ndarray, q: np.ndarray, pad: int = 2) -> np.ndarray:
    """Hartley values of ht3_center(zero-padded vol) trilinearly interpolated at q (P, 3) cycles/pixel."""
    d = vol.shape[-1]
    n = pad * d
    p0 = (n - d) // 2
    h = ht3_center(np.pad(vol, [(p0, n - d - p0)] * 3))
    h = torch.from_numpy(h)[None, None]
    idx = torch.from_numpy(q) * n + n // 2  # voxel index (x, y, z)
    grid = (idx * 2.0 / (n - 1) - 1.0).reshape(1, -1, 1, 1, 3)
    return F.grid_sample(h, grid, align_corners=True)[0, 0].reshape(-1).numpy()


def test_presets_are_distinct_and_sized():
    d = 32
    from tomodrgn.simulate.phantom import render_particle

    four = get_preset("4-class")
    masses = four.phantom.masses()
    assert np.all(masses[1:] / masses.sum() > 0.12), "each removable domain must be a sizeable fraction of the mass"
    vols = [render_particle(four.phantom, d, a) for a in four.reference.amplitudes]
    for i in range(4):
        occupied = np.argwhere(vols[i] > 0.1 * vols[i].max()) - d // 2
        radius = np.linalg.norm(occupied, axis=1).max()
        assert d / 4 <= radius <= d / 2 - 2, f"class {i}: particle radius {radius} px not ~ ½–⅔ of the box"
        for j in range(i):
            cc = np.corrcoef(vols[i].ravel(), vols[j].ravel())[0, 1]
            rel = np.linalg.norm(vols[i] - vols[j]) / np.linalg.norm(vols[0])
            assert cc < 0.97 and rel > 0.2, f"classes {i} and {j} too similar (cc {cc:.3f}, rel diff {rel:.3f})"
    cont = get_preset("continuous")
    ends = [
        render_particle(cont.phantom, d, cont.reference.amplitudes[k], cont.reference.offsets[k] * d) for k in (0, -1)
    ]
    assert np.linalg.norm(ends[0] - ends[1]) / np.linalg.norm(ends[0]) > 0.3
    homo = get_preset("homogeneous")
    assert len(homo.reference.labels) == 1
    with pytest.raises(ValueError, match="unknown simulation preset"):
        get_preset("nope")


def test_outputs_readable_and_star_matches_truth(tmp_path):
    calls = []
    sim = simulate_dataset(
        tmp_path / "s", preset="4-class", n_particles=10, box_size=16, seed=3, n_tomograms=2,
        shift_std=5.0, progress=lambda a, b: calls.append((a, b)),
    )  # fmt: skip
    assert calls[-1] == (10, 10)
    star = starfile.read(sim.star_path, always_dict=True)
    optics, parts = star["optics"], star["particles"]
    assert set(OPTICS_COLUMNS) <= set(optics.columns)
    assert set(PARTICLE_COLUMNS) <= set(parts.columns), set(PARTICLE_COLUMNS) - set(parts.columns)
    assert optics["rlnImagePixelSize"][0] == pytest.approx(419.2 / 16) and optics["rlnImageSize"][0] == 16
    assert optics["rlnImageDimensionality"][0] == 2
    assert len(parts) == 10 * 41
    truth = np.load(sim.truth_path)
    # grouping, names, tomograms
    groups = list(dict.fromkeys(parts["rlnGroupName"]))
    assert groups == sim.particle_names == [str(n) for n in truth["particle_names"]]
    assert set(parts["rlnMicrographName"]) == {"tomo00", "tomo01"}
    assert all(g.startswith(m + "_") for g, m in zip(parts["rlnGroupName"], parts["rlnMicrographName"]))
    # doses, tilts, angles equal the ground truth
    np.testing.assert_allclose(-parts["rlnCtfBfactor"] / 4, truth["image_dose"], atol=1e-5)
    np.testing.assert_allclose(parts["rlnCtfScalefactor"], np.cos(np.deg2rad(truth["image_tilt"])), atol=1e-6)
    r_star = euler_to_matrix(parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"])
    np.testing.assert_allclose(r_star, truth["image_rotation"], atol=1e-5)
    p_idx = truth["image_particle"]
    expected = tilt_about_y(truth["image_tilt"]) @ truth["rotation"][p_idx]
    np.testing.assert_allclose(r_star, expected, atol=1e-5)
    first = truth["image_tilt"] == 0
    np.testing.assert_allclose(r_star[first], truth["rotation"], atol=1e-5)  # consensus pose = the 0° tilt's
    scheme = dose_symmetric(60.0, 3.0)
    np.testing.assert_allclose(truth["image_tilt"][:41], scheme)
    np.testing.assert_allclose(truth["image_dose"][:41], 3.0 * np.arange(1, 42))
    np.testing.assert_allclose(
        parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), truth["image_shift"], atol=1e-5
    )
    assert 0 < np.abs(truth["image_shift"]).std() < 10
    np.testing.assert_allclose(parts["rlnDefocusU"], truth["defocus_u"][p_idx], atol=1e-5)
    assert np.all((truth["defocus_u"] > 19000) & (truth["defocus_v"] < 41000))
    # positions: inside the tomogram, non-overlapping within a tomogram
    pos = truth["position_px"]
    np.testing.assert_allclose(parts[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]], pos[p_idx])
    shape_xyz = truth["tomogram_shape"][::-1]
    assert np.all(pos >= 8) and np.all(pos <= shape_xyz - 8)
    for t in range(2):
        p = pos[truth["tomogram"] == t]
        dist = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(len(p)) * 1e9
        assert dist.min() >= 0.75 * 16 - 1
    # files
    img = _read_stack_image(sim.star_path.parent, parts["rlnImageName"].iloc[45])
    assert img.shape == (16, 16) and np.isfinite(img).all()
    with mrcfile.open(sim.star_path.parent / parts["rlnImageName"].iloc[0].split("@")[1]) as m:
        assert m.data.shape == (41, 16, 16) and m.voxel_size.x == pytest.approx(419.2 / 16, rel=1e-5)
    assert len(sim.volume_paths) == 4
    for p in sim.volume_paths:
        with mrcfile.open(p) as m:
            assert m.data.shape == (16, 16, 16) and m.voxel_size.x == pytest.approx(419.2 / 16, rel=1e-5)
    np.testing.assert_array_equal(np.loadtxt(sim.labels_path, dtype=int), sim.labels)
    np.testing.assert_array_equal(truth["label"], sim.labels)


@pytest.mark.parametrize("dose_filter,shift_std", [(False, 0.0), (True, 15.0)])
def test_fourier_slice_consistency(tmp_path, dose_filter, shift_std):
    """Reader view (ht2_center ∘ symmetrize of the image) = CTF × Hartley slice of the true volume at coords @ R."""
    d = 32
    sim = simulate_dataset(
        tmp_path / "s", preset="4-class", n_particles=3, box_size=d, snr=None, dose_filter=dose_filter,
        shift_std=shift_std, seed=1,
    )  # fmt: skip
    star = starfile.read(sim.star_path, always_dict=True)
    parts, optics = star["particles"], star["optics"]
    apix = float(optics["rlnImagePixelSize"][0])
    truth = np.load(sim.truth_path)
    lat = Lattice(d)
    m = lat.circular_mask
    freqs = torch.from_numpy(lat.freqs2d(apix))
    vols = [mrcfile.read(p).astype(np.float64) for p in sim.volume_paths]
    rows = np.r_[0:3, 20:23, 40:44, 60, 100:103]  # several tilts, incl. high tilts, of each particle
    for r in rows:
        row = parts.iloc[r]
        img = _read_stack_image(sim.star_path.parent, row["rlnImageName"]).astype(np.float64)
        observed = symmetrize_ht(ht2_center(img)).ravel()
        rot = euler_to_matrix(row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"])
        q = lat.coords.astype(np.float64) @ rot
        vol = vols[sim.labels[truth["image_particle"][r]]]
        ctf = compute_ctf(
            freqs, *(torch.tensor([float(row[c])]) for c in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")),
            torch.tensor([float(optics["rlnVoltage"][0])]), torch.tensor([float(optics["rlnSphericalAberration"][0])]),
            torch.tensor([float(optics["rlnAmplitudeContrast"][0])]), torch.tensor([float(row["rlnPhaseShift"])]),
        )[0].numpy()  # fmt: skip
        if dose_filter:
            ctf = ctf * dose_weights(np.array([-row["rlnCtfBfactor"] / 4]), lat.spatial_frequency(apix))[0]
        shift = torch.tensor([[row["rlnOriginXAngst"], row["rlnOriginYAngst"]]])
        for name, h in (("exact DTFT", None), ("ht3_center", _ht3_slice(vol, q))):
            if h is None:
                f = _dtft(vol, q)
                h = f.real - f.imag
            h = torch.from_numpy(h * ctf)[None]
            if shift_std > 0:  # the decoder's translation: needs h(−k), the lattice reversed
                h = translate_hartley(h, h.flip(-1), freqs, shift)
            expected = h[0].numpy()
            cc = np.corrcoef(observed[m], expected[m])[0, 1]
            assert cc > 0.995, f"row {r} ({name}): correlation {cc:.4f}"
            scale = np.dot(observed[m], expected[m]) / np.dot(expected[m], expected[m])
            assert scale == pytest.approx(1.0, abs=0.03), f"row {r} ({name}): scale {scale:.3f}"


def test_snr_and_tilt_dependent_noise(tmp_path):
    kw = dict(preset="homogeneous", n_particles=40, box_size=16, seed=5, n_tilts=41)
    clean = simulate_dataset(tmp_path / "clean", snr=None, **kw)
    noisy = simulate_dataset(tmp_path / "noisy", snr=0.05, **kw)
    truth = np.load(noisy.truth_path)
    tilt = truth["image_tilt"]
    a = np.concatenate([mrcfile.read(clean.star_path.parent / "particles" / f"{n}.mrcs") for n in clean.particle_names])
    b = np.concatenate([mrcfile.read(noisy.star_path.parent / "particles" / f"{n}.mrcs") for n in noisy.particle_names])
    noise = (b - a).astype(np.float64)
    zero, high = tilt == 0, np.isclose(np.abs(tilt), 60)
    snr0 = a[zero].astype(np.float64).var(axis=(1, 2)).mean() / noise[zero].var()
    assert snr0 == pytest.approx(0.05, rel=0.06)
    ratio = noise[high].var() / noise[zero].var()
    assert ratio == pytest.approx(1 / np.cos(np.deg2rad(60)), rel=0.1)
    assert float(truth["noise_std"]) ** 2 == pytest.approx(noise[zero].var(), rel=0.06)


def test_drop_tilts_ragged_and_seeds(tmp_path):
    kw = dict(preset="continuous", n_particles=12, box_size=16, drop_tilts=6)
    s1 = simulate_dataset(tmp_path / "a", seed=7, **kw)
    s2 = simulate_dataset(tmp_path / "b", seed=7, **kw)
    s3 = simulate_dataset(tmp_path / "c", seed=8, **kw)
    p1 = starfile.read(s1.star_path, always_dict=True)["particles"]
    counts = p1.groupby("rlnGroupName", sort=False).size()
    assert counts.min() >= 41 - 6 and counts.max() <= 41 and counts.nunique() > 1
    truth = np.load(s1.truth_path)
    np.testing.assert_array_equal(counts.to_numpy(), truth["n_tilts"])
    for name, c in counts.items():
        rows = p1[p1["rlnGroupName"] == name]
        assert rows["rlnCtfScalefactor"].iloc[0] == 1.0  # the 0° tilt is never dropped
        doses = -rows["rlnCtfBfactor"].to_numpy() / 4
        assert np.all(np.diff(doses) > 0) and np.all(np.isin(np.round(doses, 3), 3.0 * np.arange(1, 42)))
        stack = mrcfile.read(s1.star_path.parent / "particles" / f"{name}.mrcs")
        assert len(stack) == c
        assert [int(x.split("@")[0]) for x in rows["rlnImageName"]] == list(range(1, c + 1))
    # continuous ground truth
    assert np.all((truth["coordinate"] >= 0) & (truth["coordinate"] <= 1))
    np.testing.assert_array_equal(truth["label"], np.minimum((truth["coordinate"] * 10).astype(int), 9))
    assert len(s1.volume_paths) == N_CONTINUOUS_BINS
    # seeds
    p2 = starfile.read(s2.star_path, always_dict=True)["particles"]
    p3 = starfile.read(s3.star_path, always_dict=True)["particles"]
    assert p1.equals(p2) and not p1["rlnAngleRot"].equals(p3["rlnAngleRot"])
    n0 = s1.particle_names[0]
    np.testing.assert_array_equal(
        mrcfile.read(s1.star_path.parent / "particles" / f"{n0}.mrcs"),
        mrcfile.read(s2.star_path.parent / "particles" / f"{n0}.mrcs"),
    )
    np.testing.assert_array_equal(s1.labels, s2.labels)
    assert not np.array_equal(np.load(s1.truth_path)["coordinate"], np.load(s3.truth_path)["coordinate"])


def test_tomogram_uses_particle_pose(tmp_path):
    """The z projection of a pasted particle equals the CTF-free forward projection at its 0° pose."""
    d = 24
    # one particle per tomogram, so no neighbour enters the box
    sim = simulate_dataset(tmp_path / "s", preset="4-class", n_particles=4, box_size=d, snr=None, n_tomograms=4)
    truth = np.load(sim.truth_path)
    spectra = volume_spectra(np.stack([mrcfile.read(p) for p in sim.volume_paths]), 2)
    coords = torch.from_numpy(half_grid(d)[0].astype(np.float64))
    proj = filtered_images(
        central_slices(spectra, torch.from_numpy(truth["rotation"]), coords, volume_index=truth["label"]),
        sim.pixel_size, d,
    ).numpy()  # fmt: skip
    for i in range(4):
        tomo = mrcfile.read(simulate_tomogram(sim, f"tomo{i:02d}", noise=0.0))
        assert tomo.shape == tuple(sim.tomogram_shape) == (2 * d, 8 * d, 8 * d)
        x, y, z = (int(c) - d // 2 for c in truth["position_px"][i])
        box = tomo[z : z + d, y : y + d, x : x + d].sum(0)
        cc = np.corrcoef(box.ravel(), proj[i].ravel())[0, 1]
        assert cc > 0.995, f"particle {i}: tomogram projection vs forward model cc {cc:.3f}"
    with pytest.raises(ValueError, match="not in"):
        simulate_tomogram(sim, "tomo99")
    noisy = mrcfile.read(simulate_tomogram(sim, "tomo00", noise=0.2, seed=1))
    assert noisy.std() > 0.1 * max(mrcfile.read(p).max() for p in sim.volume_paths)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        simulate_dataset(tmp_path, box_size=15, n_particles=2)
    with pytest.raises(ValueError, match="n_tilts=50"):
        simulate_dataset(tmp_path, box_size=16, n_particles=2, n_tilts=50)
    with pytest.raises(ValueError, match="snr"):
        simulate_dataset(tmp_path, box_size=16, n_particles=2, snr=0.0)


def test_two_class_preset_balanced_and_phase_plate(tmp_path):
    """2-class: exactly balanced labels, class 1 = class 0 without domain A; phase_shift reaches the STAR and the
    images (a 90° phase plate turns the near-focus low-frequency CTF from ≈ amplitude contrast to ≈ 1)."""
    two = get_preset("2-class")
    assert two.reference.amplitudes.tolist() == [[1, 1, 1, 1], [1, 0, 1, 1]]
    for n in (7, 144):
        labels = two.sample(n, np.random.default_rng(3)).labels
        assert np.bincount(labels).tolist() == [(n + 1) // 2, n // 2]
    kw = dict(preset="2-class", n_particles=6, box_size=16, n_tilts=10, max_tilt=15.0, tilt_step=3.0, snr=None,
              defocus_range=(5000.0, 5000.0), astigmatism=0.0, shift_std=0.0, seed=1)  # fmt: skip
    plate = simulate_dataset(tmp_path / "vpp", phase_shift=90.0, **kw)
    simulate_dataset(tmp_path / "plain", **kw)
    df = starfile.read(plate.star_path)["particles"]
    assert np.allclose(df["rlnPhaseShift"], 90.0)
    assert np.abs(np.load(plate.truth_path)["tilt_scheme"]).max() <= 15.0
    name = plate.particle_names[0]
    a = mrcfile.read(tmp_path / "vpp" / "particles" / f"{name}.mrcs")
    b = mrcfile.read(tmp_path / "plain" / "particles" / f"{name}.mrcs")
    assert a.shape == b.shape == (10, 16, 16)
    assert a.std() > 3 * b.std(), "the phase plate must raise the low-frequency contrast"


def test_float16_stacks_mode_12_read_as_float32(tmp_path):
    """``float16=True`` writes MRC mode 12 stacks (half the bytes) holding the float32 images rounded to float16;
    the dataset reads them as float32 Hartley images equal to those of the float32 stacks within that rounding."""
    from tomodrgn.data import TiltSeriesDataset
    from tomodrgn.io.particles import read_particles

    kw = dict(preset="2-class", n_particles=3, box_size=16, n_tilts=5, seed=4)
    s32 = simulate_dataset(tmp_path / "f32", **kw)
    s16 = simulate_dataset(tmp_path / "f16", float16=True, **kw)
    for name in s32.particle_names:
        p32, p16 = (s.star_path.parent / "particles" / f"{name}.mrcs" for s in (s32, s16))
        with mrcfile.open(p32) as m32, mrcfile.open(p16) as m16:
            assert (int(m32.header.mode), int(m16.header.mode)) == (2, 12)
            assert m16.data.dtype == np.float16 and m16.header.ispg == 0  # an image stack, as RELION writes
            np.testing.assert_array_equal(m16.data, m32.data.astype(np.float16))
            assert m16.voxel_size.x == pytest.approx(float(m32.voxel_size.x))
        assert p16.stat().st_size - 1024 == (p32.stat().st_size - 1024) // 2
    d32, d16 = (TiltSeriesDataset(read_particles(s.star_path), sequential=True) for s in (s32, s16))
    a, b = d32[1]["images"], d16[1]["images"]
    assert b.dtype == torch.float32
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 2e-3, rel  # float16 keeps 11 significant bits: relative rounding ≤ 2⁻¹¹ per pixel


def test_write_mrc_float16_range_checked(tmp_path):
    from tomodrgn.io.mrc import write_mrc

    with pytest.raises(ValueError, match="float16's range"):
        write_mrc(tmp_path / "big.mrcs", np.full((1, 4, 4), 1e5, np.float32), dtype="float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        write_mrc(tmp_path / "x.mrc", np.zeros((4, 4, 4), np.float32), dtype="int8")
    assert not list(tmp_path.iterdir())  # nothing half-written
