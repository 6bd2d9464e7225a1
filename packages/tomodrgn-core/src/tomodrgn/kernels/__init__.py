"""Lattice-mask kernels: a pure-torch reference and a Triton implementation, chosen at run time.

Use :func:`tomodrgn.kernels.masked_lattice` (``backend="auto" | "torch" | "triton"``; auto = Triton on CUDA).
"""

from tomodrgn.kernels.dispatch import masked_lattice
from tomodrgn.kernels.lattice_mask_torch import HalfLattice, MaskedLattice, half_lattice

__all__ = ["HalfLattice", "MaskedLattice", "half_lattice", "masked_lattice"]
