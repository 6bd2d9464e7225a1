"""Coordinate decoder with gaussian Fourier features, evaluated on half of Fourier space (Hartley/Friedel symmetry).

For a 3-D coordinate x (cycles/pixel, each component in [−0.5, 0.5]) the network outputs two channels (a, b): the
real and imaginary parts of the volume's Fourier transform F(x). A real volume has F(−x) = conj F(x), so the
Hartley values are h(x) = a − b and h(−x) = a + b. To make the decoded function exactly Hermitian, the network is
only ever evaluated on a canonical half space (z < 0, or z = 0 and y < 0, or z = y = 0 and x ≤ 0); a point in the
other half is evaluated at −x and its b is negated (cryoDRGN's convention, extended to the z = 0 plane).

Features (cryoDRGN "gaussian"): ``[sin(2π x·B), cos(2π x·B)]`` with B (3, F) = feat_sigma·N(0, 1)·(D/2)/(2π),
F = 3·D/2 by default, a registered buffer (saved in checkpoints, identical across DDP ranks).

Output envelope: (a, b) = E(|x|)·MLP(x), E even in x (buffers, saved in checkpoints; r = |x|·D in pixels).
Why: the volume's centre voxel is the sum of its spectrum over the ball, so a common offset of the decoder over many
Fourier voxels lands on that one voxel. A coordinate MLP's errors are smooth in x; where the data hold no signal
(beyond the information limit: thousands of voxels) nothing pulls its output to zero, and with E ≡ 1 it carried a
common offset there (+0.6 of its spread on the demo) that made a spike of 13–26 σ of the residual (decoded − best
linear fit of the truth) at the box centre.
The default E is the data's own signal amplitude per shell (:meth:`set_envelope_profile`, measured before training
by :mod:`tomodrgn.training.signal_profile`), continued beyond the last shell with measurable signal by its decay:
the MLP's outputs are O(1) wherever there is signal, and whatever it outputs beyond the information limit is scaled
down to the data's level. On the 4-class demo (2,000 particles, D = 32, SNR 0.05, 10 epochs) the shells beyond the
information limit (12–16 of 16) contributed +11.9 σ of the residual to the centre with the fixed envelope and +0.7 σ
with the measured one (their mean from +0.63 to ≈ +0.05 of their spread); the map–truth CC rose from 0.994–0.996 to
0.996–0.997. (The centre's remaining error was the optimisation's step-to-step fluctuation, removed by weight
averaging, :mod:`tomodrgn.training.averaging`.)
The fixed alternative (``decoder_envelope="fixed"``, the previous default) is E(r) = 1 + (g − 1)·exp(−r²/2r₀²),
g = 10, r₀ = 2 px: it holds only the few low shells' large values (5–9 σ left at the centre on a smaller demo-like
run). Checkpoints without the gain buffers load with g = 1, without the profile with P ≡ 1 (the decoders they were
trained as): E = fixed gain × profile.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from tomodrgn.models.mlp import ResidLinear

#: on the CPU the MLP runs over the points in blocks whose activations (points × nodes, float32) stay below this:
#: glibc serves blocks under its mmap threshold (fixed at 4 MiB, :mod:`tomodrgn.runtime.mmap_threshold`) from the
#: heap, reused block after block instead of mapped and faulted in afresh, and the elementwise work between the matrix
#: products (ReLU, its backward, the residual adds) runs in cache. One training step at D = 64, 41 tilts, 256×3, one
#: core: 4.75 → 6.4 particles/s, the decoder from 68 % to 93 % of the measured matmul peak, minor page faults per step
#: 8,400 → ~60 (``docs/benchmarks.md``). On a GPU all points go in one call.
CPU_BLOCK_BYTES = 2 << 20


def point_block(n_points: int, nodes: int, device: torch.device) -> int:
    """Points per MLP call: all of them on a GPU; on the CPU as many as keep a layer's activations within
    :data:`CPU_BLOCK_BYTES` (at least 64)."""
    if device.type != "cpu":
        return max(1, n_points)
    return max(64, CPU_BLOCK_BYTES // (4 * nodes))


def gaussian_feature_matrix(D: int, feat_sigma: float, n_features: int, generator: torch.Generator | None = None):
    """B (3, n_features) in cycles per unit coordinate, for features sin/cos(2π x·B) (cryoDRGN's gaussian)."""
    return torch.randn(3, n_features, generator=generator) * (feat_sigma * (D / 2) / (2 * math.pi))


def canonical_flip(coords: torch.Tensor) -> torch.Tensor:
    """(K,) bool: True where x (K, 3) lies in the non-canonical half space (evaluated as −x)."""
    x, y, z = coords.unbind(-1)
    return (z > 0) | ((z == 0) & ((y > 0) | ((y == 0) & (x > 0))))


class HartleyDecoder(nn.Module):
    """MLP of [features(x), z] → (a, b); returns Hartley values (h(x), h(−x)).

    ``arch`` (nodes, layers) as in :func:`tomodrgn.models.mlp.mlp`. The first linear layer is split into a feature
    part and a z part so that z's contribution is computed once per particle and gathered per point.
    """

    def __init__(
        self,
        D: int,
        zdim: int = 0,
        arch: tuple[int, int] = (256, 3),
        feat_sigma: float = 0.5,
        n_features: int | None = None,
        envelope: tuple[float, float] = (10.0, 2.0),
    ) -> None:
        super().__init__()
        nodes, layers = arch
        self.D, self.zdim = D, zdim
        self.n_features = n_features or 3 * (D // 2)
        self.register_buffer("feature_matrix", gaussian_feature_matrix(D, feat_sigma, self.n_features))
        self.first = nn.Linear(2 * self.n_features, nodes)
        self.first_z = nn.Linear(zdim, nodes, bias=False) if zdim > 0 else None
        body: list[nn.Module] = [nn.ReLU(inplace=True)]
        for _ in range(layers - 1):
            body += [ResidLinear(nodes), nn.ReLU(inplace=True)]
        body.append(nn.Linear(nodes, 2))
        self.body = nn.Sequential(*body)
        gain, radius = envelope
        self.register_buffer("envelope_gain", torch.tensor(float(gain)))
        self.register_buffer("envelope_radius", torch.tensor(float(radius)))
        self.register_buffer("envelope_profile", torch.ones(D // 2 + 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before an envelope existed load with that factor ≡ 1 (the decoder they were trained
        with): no gain/radius (before the fixed envelope), no profile (before the measured one)."""
        if prefix + "envelope_gain" not in state_dict:
            state_dict[prefix + "envelope_gain"] = torch.ones_like(self.envelope_gain)
            state_dict[prefix + "envelope_radius"] = torch.ones_like(self.envelope_radius)
        if prefix + "envelope_profile" not in state_dict:
            state_dict[prefix + "envelope_profile"] = torch.ones_like(self.envelope_profile)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_envelope_profile(self, profile: torch.Tensor | np.ndarray) -> None:
        """Use the measured envelope: P(r) at shells r = 0 … D/2 px (positive; see
        :func:`tomodrgn.training.signal_profile.envelope_profile`), and no fixed gain."""
        p = torch.as_tensor(np.asarray(profile), dtype=torch.float32).reshape(-1)
        if p.numel() != self.envelope_profile.numel() or not bool(torch.all(p > 0) & torch.all(torch.isfinite(p))):
            raise ValueError(f"envelope profile: need {self.envelope_profile.numel()} positive finite values")
        self.envelope_profile.copy_(p.to(self.envelope_profile.device))
        self.envelope_gain.fill_(1.0)

    def envelope(self, coords: torch.Tensor) -> torch.Tensor:
        """E(|x|) (K,) at coords (K, 3) in cycles/pixel (see the module docstring): the fixed gaussian gain times the
        measured profile, linearly interpolated in r = |x|·D px (constant beyond D/2)."""
        r2 = (coords.float() * self.D).square().sum(-1)
        fixed = 1.0 + (self.envelope_gain - 1.0) * torch.exp(-r2 / (2.0 * self.envelope_radius.square()))
        prof = self.envelope_profile
        r = torch.sqrt(r2).clamp(max=prof.numel() - 1)
        lo = r.floor().long().clamp(max=prof.numel() - 2) if prof.numel() > 1 else r.long()
        frac = r - lo.to(r.dtype)
        measured = prof[lo] + frac * (prof[(lo + 1).clamp(max=prof.numel() - 1)] - prof[lo])
        return fixed * measured

    def featurize(self, coords: torch.Tensor) -> torch.Tensor:
        """Gaussian Fourier features (K, 2F) of coords (K, 3) (no canonicalisation)."""
        arg = (2.0 * math.pi) * (coords @ self.feature_matrix.to(coords.dtype))
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)

    def forward(
        self,
        coords: torch.Tensor,
        features: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        point_particle: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hartley values at coords (K, 3) and at −coords, each (K,).

        ``features``: precomputed :meth:`featurize` (e.g. by the lattice-mask kernel), or None. ``z`` (B, zdim) with
        ``point_particle`` (K,) the particle of each point (z is gathered by index, all particles in one call).
        """
        with record_function("tomodrgn.featurize"):
            flip = canonical_flip(coords)
            sign = 1.0 - 2.0 * flip.to(coords.dtype)
            if features is None:
                features = self.featurize(coords * sign[:, None])  # features of the canonical point
            else:  # features of x → of −x where flipped: sin changes sign, cos does not
                f = self.n_features
                features = torch.cat([features[:, :f] * sign[:, None], features[:, f:]], dim=1)
        z_part = None
        if self.first_z is not None:
            if z is None or point_particle is None:
                raise ValueError("this decoder has zdim > 0: pass z and point_particle")
            z_part = self.first_z(z)
        block = point_block(features.shape[0], self.first.out_features, features.device)
        outs = []
        for s in range(0, max(features.shape[0], 1), block):  # one (empty) call when there are no points
            x = self.first(features[s : s + block])
            if z_part is not None:
                x = x + z_part.index_select(0, point_particle[s : s + block])
            outs.append(self.body(x))
        ab = (outs[0] if len(outs) == 1 else torch.cat(outs)).float() * self.envelope(coords)[:, None]
        a, b = ab[:, 0], ab[:, 1] * sign
        return a - b, a + b

    @torch.no_grad()
    def hartley_volume(self, z: torch.Tensor | None = None, chunk: int = 65536) -> torch.Tensor:
        """Centred 3-D Hartley transform (D, D, D) [z, y, x] of the decoded volume (zero outside radius 0.5).

        Voxel (i, j, k) has coordinate ((k − D/2)/D, (j − D/2)/D, (i − D/2)/D), matching ``ht3_center`` of a
        volume whose central slices at ``coords @ R`` are the images. Only the canonical half is evaluated.
        """
        return next(self.hartley_volumes(None if z is None else z.reshape(1, -1), chunk))

    @torch.no_grad()
    def hartley_volumes(
        self, z: torch.Tensor | None = None, chunk: int = 65536, cache_bytes: int = 1 << 30
    ) -> Iterator[torch.Tensor]:
        """:meth:`hartley_volume` of each row of ``z`` (n, zdim) in turn (one volume when None), the work that does
        not depend on z done once for all of them: the grid, the features and the first layer's feature part (kept
        while it fits ``cache_bytes``; above that, as large boxes need, recomputed for each volume), the envelope.
        The same values as one :meth:`hartley_volume` call per row."""
        if z is None and self.first_z is not None:
            raise ValueError("this decoder has zdim > 0: pass z (n, zdim)")
        D = self.D
        dev = self.feature_matrix.device
        ax = (torch.arange(D, device=dev, dtype=torch.float32) - D // 2) / D
        zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
        coords = torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)
        idx = torch.arange(D, device=dev)
        iz, iy, ix = torch.meshgrid(idx, idx, idx, indexing="ij")
        mirror_in_grid = ((iz > 0) & (iy > 0) & (ix > 0)).reshape(-1)
        mirror = (((D - iz) % D) * D * D + ((D - iy) % D) * D + (D - ix) % D).reshape(-1)
        inside = (coords * coords).sum(-1) <= 0.25
        todo = torch.nonzero(inside & (~canonical_flip(coords) | ~mirror_in_grid)).squeeze(1)
        dc = (D // 2) * (D * D + D + 1)
        blocks = [todo[s : s + chunk] for s in range(0, todo.numel(), chunk)] + [torch.tensor([dc], device=dev)]
        keep = (todo.numel() + 1) * self.first.out_features * 4 <= cache_bytes
        flip = [canonical_flip(coords[b]) for b in blocks]
        feats = [self.first(self.featurize(coords[b] * (1.0 - 2.0 * f.float())[:, None])) if keep else None
                 for b, f in zip(blocks, flip)]  # fmt: skip
        env = [self.envelope(coords[b])[:, None] for b in blocks]
        # one volume without z (the cached first-layer output is then used once: the body's first ReLU is in place)
        rows = [None] if self.first_z is None else list(z.reshape(-1, self.zdim).to(dev))
        for zrow in rows:
            z_part = None if zrow is None else self.first_z(zrow.reshape(1, -1))
            vol = torch.zeros(D * D * D, device=dev)
            values = []
            for b, f, x, e in zip(blocks, flip, feats, env):
                if x is None:
                    x = self.first(self.featurize(coords[b] * (1.0 - 2.0 * f.float())[:, None]))
                x = x if z_part is None else x + z_part
                ab = self.body(x).float() * e
                sign = 1.0 - 2.0 * f.float()
                a, bb = ab[:, 0], ab[:, 1] * sign
                values.append((a - bb, a + bb))
            for b, (h_pos, h_neg) in zip(blocks[:-1], values[:-1]):
                m = mirror_in_grid[b]
                vol[mirror[b][m]] = h_neg[m]
                vol[b] = h_pos
            h_pos, h_neg = values[-1]
            vol[dc] = 0.5 * (h_pos[0] + h_neg[0])  # = a (b is odd): DC is never trained; the MLP's continuation
            yield vol.reshape(D, D, D)
