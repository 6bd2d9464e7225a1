"""What ``analyze`` reports of a run's pose corrections (``--refine-poses``, ``poses.E.npz``): their distribution
(``pose_corrections.png``: rotation angle ° and origin Å per particle, 2-D shift Å per tilt image) and the particles
whose correction lies in the prior's tail (``pose_tails.txt``), i.e. poses upstream got wrong by more than the
prior expects, or particles the map explains poorly (other conformations, junk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import chi2

from tomodrgn.analysis import plots

#: a correction is in the prior's tail beyond this many prior widths (the 99th percentile of |θ| for θ ~ N(0, I₃))
TAIL_WIDTHS = float(np.sqrt(chi2.ppf(0.99, 3)))


def pose_correction_figure(poses: dict[str, np.ndarray]):
    """Histograms of the corrections of ``poses`` (a ``poses.E.npz``): per particle the rotation angle (°) and the
    3-D origin's length (Å), per image the 2-D shift's length (Å); each with a dashed line at the prior's tail
    (:data:`TAIL_WIDTHS` prior widths): a Figure."""
    sigma = poses["prior_widths"]
    values = (np.degrees(np.linalg.norm(poses["rotation_rad"], axis=1)), np.linalg.norm(poses["origin_A"], axis=1),
              np.linalg.norm(poses["tilt_shift_A"], axis=1))  # fmt: skip
    tails = (np.degrees(sigma[0]) * TAIL_WIDTHS, sigma[1] * TAIL_WIDTHS, sigma[2] * float(np.sqrt(chi2.ppf(0.99, 2))))
    labels = ("rotation correction per particle (°)", "3-D origin correction per particle (Å)",
              "2-D shift correction per tilt image (Å)")  # fmt: skip
    fig = Figure(figsize=(11, 3.4), dpi=110, layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, v, tail, label in zip(axes, values, tails, labels):
        ax.hist(v, bins=30, color="tab:blue", alpha=0.8)
        ax.axvline(tail, color="tab:red", ls="--", label=f"prior's 99 % tail ({tail:.3g})")
        ax.set_xlabel(label)
        ax.set_ylabel("particles" if "particle" in label else "images")
        ax.legend(fontsize=7)
    fig.suptitle("pose corrections (--refine-poses)")
    return fig


def tail_particles(poses: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the particles whose rotation or origin correction exceeds :data:`TAIL_WIDTHS` prior widths."""
    sigma = poses["prior_widths"]
    rotation = np.linalg.norm(poses["rotation_rad"], axis=1) / sigma[0]
    origin = np.linalg.norm(poses["origin_A"], axis=1) / sigma[1]
    return np.flatnonzero((rotation > TAIL_WIDTHS) | (origin > TAIL_WIDTHS))


def write_pose_report(poses_file: Path, out: Path) -> tuple[dict[str, Path], list[str]]:
    """``pose_corrections.png`` and ``pose_tails.txt`` (0-based particle indices, training order) under ``out``
    for the corrections in ``poses_file``; returns (files written, report lines)."""
    from tomodrgn.export.selections import write_index_list

    poses = dict(np.load(poses_file))
    files = {"pose_corrections": plots.save_figure(pose_correction_figure(poses), out / "pose_corrections.png")}
    tails = tail_particles(poses)
    files["pose_tails"] = write_index_list(out / "pose_tails.txt", tails, f"{len(tails)} particles whose rotation"
                                           f" or origin correction exceeds {TAIL_WIDTHS:.2f} prior widths")  # fmt: skip
    angles = np.degrees(np.linalg.norm(poses["rotation_rad"], axis=1))
    lines = [f"From {poses_file.name}: median rotation correction {np.median(angles):.2f}°, median origin correction "
             f"{np.median(np.linalg.norm(poses['origin_A'], axis=1)):.1f} Å; {len(tails)} of {len(angles)} particles"
             f" beyond the prior's 99 % tail ({files['pose_tails'].name})."]  # fmt: skip
    return files, lines
