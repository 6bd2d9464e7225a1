"""Physics conventions: Hartley transforms, lattice counts, dose, CTF, poses, tilt scheme (docs/architecture.md,
"Physics")."""

import numpy as np
import pytest
import torch
import torch_ctf

from tomodrgn.physics.ctf import compute_ctf, electron_wavelength
from tomodrgn.physics.dose import (
    critical_exposure,
    dose_mask,
    dose_per_tilt,
    dose_weights,
    optimal_exposure,
    tilt_weights,
)
from tomodrgn.physics.hartley import (
    fourier_crop,
    ht2_center,
    ht3_center,
    iht2_center,
    iht3_center,
    symmetrize_ht,
)
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import (
    euler_to_matrix,
    matrix_to_euler,
    random_rotations,
    tilt_about_y,
    translate_hartley,
)
from tomodrgn.physics.tilt_scheme import dose_symmetric


@pytest.mark.parametrize(("D", "expected"), [(64, 3208), (128, 12852), (256, 51432)])
def test_points_per_tilt(D, expected):
    assert Lattice(D).circular_mask.sum() == expected


@pytest.mark.parametrize(
    ("D", "pixel_size", "kept", "unmasked"),
    [(64, 6.55, 96776, 131528), (128, 3.275, 194064, 526932), (256, 1.6375, 378516, 2108712)],
)
def test_points_per_particle_after_dose_mask(D, pixel_size, kept, unmasked):
    lat = Lattice(D)
    freq = lat.spatial_frequency(pixel_size)[lat.circular_mask]
    dose = 3.0 * np.arange(1, 42)
    mask = dose_mask(dose, freq)
    assert mask.size == unmasked
    assert mask.sum() == kept


def test_dose_mask_order_free():
    """The mask depends on each tilt's own dose, not on the order the tilts are listed in."""
    lat = Lattice(64)
    freq = lat.spatial_frequency(6.55)[lat.circular_mask]
    dose = 3.0 * np.arange(1, 42)
    perm = np.random.default_rng(0).permutation(41)
    np.testing.assert_array_equal(dose_mask(dose[perm], freq), dose_mask(dose, freq)[perm])
    np.testing.assert_allclose(dose_per_tilt(dose[perm]), np.full(41, 3.0))


def test_exposure_curves():
    k = np.array([0.0, 0.1, 0.25])
    ne = critical_exposure(k)
    assert np.isinf(ne[0])
    np.testing.assert_allclose(ne[1:], 0.24499 * k[1:] ** -1.6649 + 2.8141)
    np.testing.assert_allclose(critical_exposure(k[1:], 200.0), 0.8 * ne[1:])
    np.testing.assert_allclose(optimal_exposure(k[1:]), 2.51284 * ne[1:])
    w = dose_weights(np.array([0.0, 30.0]), k[1:])
    np.testing.assert_allclose(w[0], 1.0)
    np.testing.assert_allclose(w[1], np.exp(-30.0 / (2 * ne[1:])))
    np.testing.assert_allclose(tilt_weights([0.0, 60.0]), [1.0, 0.5])


def test_lattice_geometry():
    lat = Lattice(8)
    assert lat.coords.shape == (81, 3)
    assert lat.coords[0].tolist() == [-0.5, -0.5, 0.0]
    assert lat.coords[40].tolist() == [0.0, 0.0, 0.0]  # centre (DC)
    assert not lat.circular_mask[40]
    np.testing.assert_allclose(lat.spatial_frequency(2.0)[40 + 4], 4 / (2.0 * 8))
    with pytest.raises(ValueError, match="even"):
        Lattice(7)


def test_hartley_roundtrip_and_definition():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 16, 16))
    ht = ht2_center(img)
    f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1))), axes=(-2, -1))
    np.testing.assert_allclose(ht, f.real - f.imag)
    np.testing.assert_allclose(iht2_center(ht), img, atol=1e-10)
    vol = rng.normal(size=(8, 8, 8))
    np.testing.assert_allclose(iht3_center(ht3_center(vol)), vol, atol=1e-10)
    t = torch.from_numpy(img)
    np.testing.assert_allclose(ht2_center(t).numpy(), ht, atol=1e-10)


def test_symmetrize_matches_lattice_hermitian_pairs():
    """After padding to (D+1)², the Hartley value at −k equals the one of the real image's mirrored partner."""
    rng = np.random.default_rng(1)
    img = rng.normal(size=(16, 16))
    sym = symmetrize_ht(ht2_center(img)).ravel()
    f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img)))
    # h(k) = Re F(k) - Im F(k), h(-k) = Re F(k) + Im F(k) for a real image; check via the point reflection i -> n-1-i
    lat = Lattice(16)
    idx = lat.circular_indices
    n = lat.D1**2
    re_plus_im = sym[n - 1 - idx]
    re_minus_im = sym[idx]
    fr = np.pad(f, ((0, 1), (0, 1)), mode="wrap").ravel()[idx]
    np.testing.assert_allclose(re_minus_im, fr.real - fr.imag, atol=1e-9)
    np.testing.assert_allclose(re_plus_im, fr.real + fr.imag, atol=1e-9)


def test_fourier_crop_preserves_low_frequencies():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(32, 32))
    small = fourier_crop(img, 16)
    assert small.shape == (16, 16)
    np.testing.assert_allclose(small.mean(), img.mean(), atol=1e-10)
    f_big = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img)))[8:24, 8:24]
    f_small = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(small)))
    np.testing.assert_allclose(f_small[1:, 1:] * 4, f_big[1:, 1:], atol=1e-9)
    with pytest.raises(ValueError):
        fourier_crop(img, 15)


def test_translate_hartley_matches_real_space_shift():
    rng = np.random.default_rng(3)
    D, pixel = 16, 2.0
    img = rng.normal(size=(D, D))
    shifted = np.roll(img, shift=(2, -3), axis=(0, 1))  # +2 px in y, -3 px in x
    lat = Lattice(D)
    idx = lat.circular_indices
    n = lat.D1**2
    h = torch.from_numpy(symmetrize_ht(ht2_center(img)).ravel())
    expected = symmetrize_ht(ht2_center(shifted)).ravel()[idx]
    freqs = torch.from_numpy(lat.freqs2d(pixel)[idx])
    # RELION: the image is the centred projection translated by −origin, so this image has origin (+3, −2) px
    out = translate_hartley(
        h[idx], h[n - 1 - idx], freqs, torch.tensor([3.0 * pixel, -2.0 * pixel], dtype=torch.float64)
    )
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-8)


def test_euler_matches_relion_composition_and_inverts():
    rot, tilt, psi = 30.0, 50.0, -70.0

    def rz(a):
        a = np.deg2rad(a)
        return np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])

    def ry(a):
        a = np.deg2rad(a)
        return np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])

    np.testing.assert_allclose(euler_to_matrix(rot, tilt, psi), rz(psi) @ ry(tilt) @ rz(rot), atol=1e-12)
    mats = random_rotations(200, np.random.default_rng(4))
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0)
    back = euler_to_matrix(*matrix_to_euler(mats))
    np.testing.assert_allclose(back, mats, atol=1e-9)
    np.testing.assert_allclose(tilt_about_y(np.array(90.0)) @ np.array([0, 0, 1.0]), [-1.0, 0, 0], atol=1e-12)


def test_ctf_matches_torch_ctf():
    """Our RELION-convention CTF equals teamtomo's torch-ctf on its own grid."""
    D, pixel = 32, 2.0
    dfu, dfv, ang = 21000.0, 19000.0, 30.0
    ref = torch_ctf.calculate_ctf_2d(
        defocus=(dfu + dfv) / 2 / 1e4,
        astigmatism=(dfu - dfv) / 2 / 1e4,
        astigmatism_angle=ang,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        phase_shift=0.0,
        pixel_size=pixel,
        image_shape=(D, D),
        rfft=False,
        fftshift=True,
    ).squeeze()
    ky, kx = torch.meshgrid(
        torch.fft.fftshift(torch.fft.fftfreq(D, d=pixel)),
        torch.fft.fftshift(torch.fft.fftfreq(D, d=pixel)),
        indexing="ij",
    )
    freqs = torch.stack([kx, ky], -1).reshape(-1, 2).double()
    ours = compute_ctf(freqs, *(torch.tensor(v, dtype=torch.float64) for v in (dfu, dfv, ang, 300.0, 2.7, 0.1)))
    np.testing.assert_allclose(ours.reshape(D, D).numpy(), ref.double().numpy(), atol=2e-3)
    np.testing.assert_allclose(ours[D * D // 2 + D // 2].item(), 0.1)  # +w at DC (RELION)
    np.testing.assert_allclose(electron_wavelength(300.0), 0.019687, atol=1e-5)


def test_dose_symmetric_scheme():
    t = dose_symmetric()
    assert t.size == 41
    assert t[:5].tolist() == [0.0, 3.0, 6.0, -3.0, -6.0]
    assert sorted(t.tolist()) == [3.0 * i for i in range(-20, 21)]


def test_dose_per_tilt_ignores_gaps_from_dropped_tilts():
    dose = 3.0 * np.array([1, 2, 4, 5, 8])  # tilts 3, 6 and 7 were dropped
    np.testing.assert_allclose(dose_per_tilt(dose), np.full(5, 3.0))
