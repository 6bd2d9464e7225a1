"""The published tomoDRGN v1.0.1's command lines, accepted by ours with the same meaning (docs/coming-from-tomodrgn.md).

This module owns every translation. Each command's parser gets a "tomoDRGN-compatible options" group
(:func:`add_group`) built from :data:`OPTIONS`; after parsing, :func:`translate` turns what was given into our
options: an :class:`Option` with ``to`` sets our option (through ``convert``), one with ``note`` (no counterpart
here) prints one ``note:`` line saying what this project does instead, and the rest are read by the command's
adapter (:data:`ADAPTERS`: compound options, files tomoDRGN commands pass between each other, different positionals).
Our own options keep their meaning; a tomoDRGN spelling never changes what our spelling does.

Contrast: tomoDRGN's CTF is the negative of RELION's and it multiplies images by −1 unless ``--uninvert-data``;
the signs cancel, so its default is our default and ``--uninvert-data`` is our ``--invert`` (docs/architecture.md,
"Contrast: the published tomoDRGN's CTF sign and --uninvert-data").
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUP_TITLE = "tomoDRGN-compatible options"
GROUP_DESCRIPTION = "the published tomoDRGN v1.0.1's spellings, translated to the options above (see docs/)"


class CompatUsageError(Exception):
    """A command line that cannot be translated: printed as the parser's one-line usage error, exit 2."""


@dataclass(frozen=True)
class Option:
    """One tomoDRGN option: its flags and argparse ``kind``; ``to``: our option's dest that takes the value (after
    ``convert``); ``note``: no counterpart here (what we do instead); neither: read by the command's adapter."""

    flags: tuple[str, ...]
    help: str
    kind: dict = field(default_factory=dict)
    to: str | None = None
    convert: Callable[[Any], Any] | None = None
    note: str | None = None

    @property
    def dest(self) -> str:
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return "td_" + long.lstrip("-").replace("-", "_")


FLAG = {"action": "store_true", "default": None}


def _same(value):
    return value


def _true(_value) -> bool:
    return True


# --- values -------------------------------------------------------------------------------------------------------
SOURCE_SOFTWARE = ("auto", "warp", "cryosrpnt", "nextpyp", "tomodrgn_preprocessed", "cistem", "warptools", "relion")
#: tomoDRGN's --source-software → our reader flavour (None: not read here)
SOURCE_FLAVOUR = {
    "auto": "auto",
    "warp": "warp",
    "cryosrpnt": "warp",  # its simulator writes Warp-style image series
    "nextpyp": "nextpyp",
    "warptools": "relion5",
    "relion": "relion5",
    "cistem": None,
    "tomodrgn_preprocessed": None,
}
FLAVOUR_WORDS = {
    "warp": "a Warp/M image series (one row per tilt image, _rlnGroupName)",
    "relion5": "a RELION 5 / WarpTools set (_rlnTomoParticleName or an optimisation set)",
    "nextpyp": "a nextPYP export (_rlnTiltIndex)",
}
MASKS = ("none", "sphere", "tight", "soft")


def _note(text: str) -> dict:
    return {"note": text}


LAZY = Option(("--lazy",), "read images lazily", FLAG, **_note("images are always read lazily (memory-mapped) here"))
LOADER_NOTES = [
    Option(("--num-workers",), "data-loader processes", {"type": int}, **_note("images are read in this process")),
    Option(("--prefetch-factor",), "batches prefetched", {"type": int}, **_note("images are read in this process")),
    Option(("--persistent-workers",), "keep loader workers", FLAG, **_note("images are read in this process")),
    Option(("--pin-memory",), "pinned host memory", FLAG, **_note("batches are moved to the device as read")),
]
PLOT_FORMAT = Option(
    ("--plot-format",), "format of the plots", {"choices": ("png", "svgz")}, **_note("plots are written as PNG")
)
SOURCE = Option(
    ("--source-software",),
    "software that wrote the STAR file",
    {"choices": SOURCE_SOFTWARE},
)
READER = [
    SOURCE,
    Option(("--ind-ptcls",), "= --ind: particle indices (.pkl)", {"type": Path}, to="ind", convert=str),
    Option(("--ind-imgs",), "image indices to use", {"type": Path}),
    Option(("--sort-ptcl-imgs",), "order of each particle's images",
           {"choices": ("unsorted", "dose_ascending", "random")}),
    Option(("--use-first-ntilts",), "the first N tilts of each particle (-1: all)", {"type": int}),
    Option(("--use-first-nptcls",), "= --first: the first N particles (-1: all)", {"type": int}),
    Option(("--uninvert-data",), "= --invert (tomoDRGN inverts by default; see docs)", FLAG, to="invert",
           convert=_true),
    LAZY,
]  # fmt: skip
FLIP = Option(("--flip",), "= --flip-hand: mirror the maps", FLAG, to="flip_hand", convert=_true)
WEIGHTING = [
    Option(("--recon-tilt-weight",), "weight images by cos(tilt)", FLAG),
    Option(("--recon-dose-weight",), "weight by the exposure filter", FLAG),
]
NO_AMP_ONLY = Option(("--no-amp",), "no mixed precision", FLAG, **_note("decoding runs in fp32 here"))
MULTIGPU = Option(
    ("--multigpu",),
    "several GPUs",
    FLAG,
    **_note("run several GPUs with torchrun --nproc_per_node N -m tomodrgn.cli COMMAND ... (DDP)"),
)
VOLUME_OPTIONS = [  # of commands that decode volumes
    FLIP,
    Option(("--invert",), "invert the volumes' contrast", FLAG),
    Option(("--downsample",), "decode at a smaller box", {"type": int}),
    Option(("--lowpass",), "low-pass the volumes (Å)", {"type": float}),
]


def _arch(dim_flag: str, layers_flag: str, to: str, dim: int, layers: int) -> list[Option]:
    return [
        Option((dim_flag,), f"nodes per layer (tomoDRGN default {dim}); with {layers_flag}: --{to.replace('_', '-')}",
               {"type": int}),
        Option((layers_flag,), f"hidden layers (tomoDRGN default {layers}); with {dim_flag}", {"type": int}),
    ]  # fmt: skip


TRAIN_COMMON = [
    Option(("-n", "--num-epochs"), "= --epochs", {"type": int}, to="epochs"),
    Option(("-b",), "= --batch-size", {"type": int}, to="batch_size"),
    Option(("--load",), "continue a run: latest or a weights file of -o (= --resume)", {}),
    Option(("--checkpoint",), "= --checkpoint-every", {"type": int}, to="checkpoint_every"),
    Option(
        ("--log-interval",),
        "log every N particles",
        {"type": int},
        **_note("train.log has a line per epoch, the console a progress bar"),
    ),  # fmt: skip
    Option(("--verbose", "-v"), "more log lines", FLAG, **_note("train.log has the same lines either way")),
    PLOT_FORMAT,
    *READER,
    Option(("--window-r",), "inner radius of the real-space window", {"type": float}),
    Option(("--window-r-outer",), "outer radius of the real-space window", {"type": float}),
    Option(("--sequential-tilt-sampling",), "= --sequential-tilts", FLAG, to="sequential_tilts", convert=_true),
    *WEIGHTING,
    Option(("--l-dose-mask",), "optimal-dose lattice masking", FLAG),
    Option(("--wd",), "= --weight-decay", {"type": float}, to="weight_decay"),
    Option(
        ("--norm",),
        "image normalisation (mean, std)",
        {"type": float, "nargs": 2},
        **_note("images are normalised by the data set's own standard deviation here"),
    ),  # fmt: skip
    MULTIGPU,
    Option(("--l-extent",), "lattice extent (0.5 here)", {"type": float}),
    Option(
        ("--pe-type",),
        "positional encoding",
        {"choices": ("geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf", "gaussian", "none")},
    ),  # fmt: skip
    Option(("--pe-dim",), "= --n-features: Fourier features", {"type": int}, to="n_features"),
    Option(("--activation",), "activation", {"choices": ("relu", "leaky_relu")}),
    *LOADER_NOTES[1:],  # --num-workers is ours too
]
TRAIN_NN = [*TRAIN_COMMON, *_arch("--dim", "--layers", "dec_arch", 512, 3)]
TRAIN_VAE = [
    *TRAIN_COMMON,
    Option(("--fraction-train",), "fraction of particles trained on", {"type": float}),
    Option(
        ("--show-summary-stats",),
        "print summary statistics",
        {"type": str},
        **_note("train.log and the console report each epoch's losses"),
    ),  # fmt: skip
    Option(("--beta-control",), "KL capacity control", {"type": float}),
    *_arch("--enc-dim-A", "--enc-layers-A", "enc_arch_a", 256, 3),
    Option(("--out-dim-A",), "= --embed-dim: encoder A's output", {"type": int}, to="embed_dim"),
    *_arch("--enc-dim-B", "--enc-layers-B", "enc_arch_b", 256, 3),
    Option(
        ("--pooling-function",),
        "= --pooling (set_encoder: set)",
        {"choices": ("concatenate", "max", "mean", "median", "set_encoder")},
        to="pooling",
        convert=lambda v: "set" if v == "set_encoder" else v,
    ),  # fmt: skip
    Option(("--num-seeds",), "set-encoder seeds (1 here)", {"type": int}),
    Option(("--num-heads",), "set-encoder attention heads", {"type": int}),
    Option(("--layer-norm",), "set-encoder layer norm (always here)", FLAG),
    *_arch("--dec-dim", "--dec-layers", "dec_arch", 256, 3),
]
#: options that only describe tomoDRGN's per-tilt encoder: giving one selects --encoder per-tilt
PER_TILT_ONLY = ("td_enc_dim_B", "td_enc_layers_B", "td_out_dim_A", "td_pooling_function", "td_num_seeds",
                 "td_num_heads", "td_layer_norm")  # fmt: skip

MASK_OPTIONS = [
    Option(("--thresh",), "mask threshold", {"type": float}, **_note("the soft mask's threshold is set from the map")),
    Option(("--dilate",), "mask dilation (px)", {"type": int}, **_note("the soft mask is dilated 3 px here")),
    Option(("--dist",), "mask soft edge (px)", {"type": int}, **_note("the soft mask's edge is 10 px here")),
]

OPTIONS: dict[str, list[Option]] = {
    "backproject": [
        Option(("--output",), "the map F.mrc (F_half1, F_half2, F_filt beside it) instead of -o", {"type": Path}),
        PLOT_FORMAT,
        *READER,
        *WEIGHTING,
        FLIP,
    ],
    "downsample": [
        SOURCE,
        Option(("--downsample",), "= -D: new box size", {"type": int}, to="box_size"),
        Option(("--output",), "one stack F.mrcs of every image instead of -o", {"type": Path}),
        Option(("--batch-size",), "images per batch", {"type": int}, **_note("stacks are cropped one at a time")),
        Option(("--is-vol",), "the input is a volume", FLAG),
        Option(
            ("--chunk",),
            "images per output stack",
            {"type": int},
            **_note("--output writes one stack; our -o writes one stack per particle"),
        ),  # fmt: skip
        LAZY,
        Option(("--write-tiltseries-starfile",), "a STAR F.star for the new stack", FLAG),
    ],
    "train_nn": TRAIN_NN,
    "train_vae": TRAIN_VAE,
    "convergence_nn": [
        Option(
            ("reference_volume",),
            "= --reference",
            {"nargs": "?", "type": Path, "metavar": "REFERENCE_VOLUME"},
            to="reference",
        ),  # fmt: skip
        Option(("--fsc-mask",), "mask of the FSCs", {"choices": MASKS}),
        Option(("--include-dc",), "count the DC term", FLAG, **_note("FSCs leave the DC term out here")),
        PLOT_FORMAT,
    ],
    "convergence_vae": [
        Option(("--epoch",), "last epoch analysed (latest)", {}),
        Option(
            ("--epoch-interval",),
            "epochs between compared checkpoints",
            {"type": int},
            **_note("every saved epoch is compared with the next"),
        ),  # fmt: skip
        PLOT_FORMAT,
        Option(("--subset",), "particles in UMAP", {"type": int}, **_note("latent criteria use every particle")),
        Option(("--random-seed",), "= --seed", {"type": int}, to="seed"),
        Option(("--random-state",), "UMAP's random state", {"type": int}, **_note("no UMAP in this convergence")),
        Option(("--skip-umap",), "no UMAP", FLAG, **_note("no UMAP in this convergence")),
        Option(("--n-bins",), "UMAP histogram bins", {"type": int}, **_note("volumes at fixed particles instead")),
        Option(("--smooth",), "smooth the histogram", {}, **_note("volumes at fixed particles instead")),
        Option(("--smooth-width",), "smoothing width", {"type": float}, **_note("volumes at fixed particles instead")),
        Option(("--pruned-maxima",), "UMAP maxima kept", {"type": int}, **_note("volumes at fixed particles instead")),
        Option(("--radius",), "maxima radius", {"type": float}, **_note("volumes at fixed particles instead")),
        Option(("--final-maxima",), "= --n-volumes: volumes compared across epochs", {"type": int}, to="n_volumes"),
        *VOLUME_OPTIONS,
        Option(("--skip-volgen",), "= --no-volumes", FLAG, to="no_volumes", convert=_true),
        Option(("--mask",), "volume mask", {"choices": MASKS}, **_note("volume CCs use a soft mask of each volume")),
        *MASK_OPTIONS,
    ],
    "analyze": [
        Option(("--skip-vol",), "no volumes", FLAG, **_note("the cluster and PC volumes are decoded (seconds each)")),
        Option(("--skip-umap",), "= --no-umap", FLAG, to="no_umap", convert=_true),
        PLOT_FORMAT,
        Option(("--pc",), "PCs traversed", {"type": int}, **_note("volumes along PC1 and PC2: tomodrgn pc_traversal")),
        Option(("--pc-ondata",), "PC traversal on data", FLAG, **_note("tomodrgn pc_traversal --lo/--hi")),
        *VOLUME_OPTIONS,
    ],
    "eval_vol": [
        Option(("-w", "--weights"), "weights.pkl / weights.N.pkl of a run (= RUN --epoch N)", {"type": Path}),
        Option(("-c", "--config"), "config.pkl of the run", {"type": Path}),
        Option(("-b", "--batch-size"), "volumes per batch", {"type": int}, **_note("volumes are decoded 32 a call")),
        NO_AMP_ONLY,
        MULTIGPU,
        FLIP,
        Option(("--downsample",), "= --box-size: Fourier-crop the volumes", {"type": int}, to="box_size"),
    ],  # --invert and --lowpass are ours too
    "eval_images": [
        Option(("-w", "--weights"), "weights.pkl / weights.N.pkl of a run (= RUN --epoch N)", {"type": Path}),
        Option(("-c", "--config"), "config.pkl of the run", {"type": Path}),
        Option(("--out-z",), "z as a pickled float32 array (n, zdim)", {"type": Path}),
        Option(("--log-interval",), "log every N particles", {"type": int}, **_note("a progress bar instead")),
        Option(("-b", "--batch-size"), "particles per batch", {"type": int}, **_note("batch chosen by memory here")),
        Option(("-v", "--verbose"), "more log lines", FLAG, **_note("the same lines either way")),
        NO_AMP_ONLY,
        *READER,
        *LOADER_NOTES,
    ],
    "analyze_volumes": [
        Option(("--config",), "config.pkl of the run that decoded them", {"type": Path}),
        Option(("--num-pcs",), "= --n-pcs", {"type": int}, to="n_pcs"),
        PLOT_FORMAT,
        Option(("--mask-path",), "= --mask FILE", {"type": Path}, to="mask", convert=str),
        *MASK_OPTIONS,
    ],
    "subtomo2chimerax": [
        Option(
            ("--mode",), "markers, one volume, or a volume per particle", {"choices": ("volumes", "volume", "markers")}
        ),  # fmt: skip
        Option(("--ind",), "particle indices (.pkl)", {"type": Path}),
        Option(("--tomoname",), "the tomogram (its _rlnMicrographName / _rlnTomoName value)", {}),
        Option(("--tomo-id-col-override",), "the STAR column naming tomograms", {}),
        Option(("--star-angpix-override",), "pixel size (Å) of the STAR's coordinates", {"type": float}),
        Option(("--weights",), "weights.N.pkl of a run", {"type": Path}),
        Option(("--config",), "config.pkl of the run", {"type": Path}),
        Option(("--zfile",), "z.N.train.pkl of the run", {"type": Path}),
        *VOLUME_OPTIONS,
        Option(("--skip-vol",), "no volumes", FLAG, **_note("--mode volumes decodes each particle's volume")),
        Option(("--vol-path",), "the one volume of --mode volume", {"type": Path}),
        Option(("--marker-radius-angstrom",), "marker radius (Å)", {"type": float}),
        Option(("--vol-render-level",), "= --level", {"type": float}, to="level"),
        Option(("--coloring-labels",), "= --labels: one label per particle", {"type": Path}, to="labels"),
        Option(("--colormap",), "matplotlib colour map of the labels", {}),
    ],
    "filter_star": [
        Option(
            ("--starfile-type",),
            "imageseries, volumeseries or optimisation_set",
            {"choices": ("imageseries", "volumeseries", "optimisation_set")},
        ),  # fmt: skip
        Option(
            ("--action",),
            "keep or drop the selection (drop = --exclude)",
            {"choices": ("keep", "drop")},
            to="exclude",
            convert=lambda v: v == "drop",
        ),  # fmt: skip
        Option(("--tomogram",), "keep one tomogram only", {}),
        Option(("--tomo-id-col",), "the column naming tomograms (with --tomogram)", {}),
        Option(("--ind-type",), "indices of particles or images", {"choices": ("particle", "image")}),
        Option(("--labels-sel",), "= --keep: labels kept", {"type": int, "nargs": "+"}, to="keep"),
    ],
    "graph_traversal": [
        Option(("--avg-neighbors",), "edge length cut-off in mean neighbour distances", {"type": float}),
        PLOT_FORMAT,
    ],
    "pc_traversal": [
        Option(("--dim",), "= --pc: one PC (1-based)", {"type": int}, to="pc", convert=lambda v: [v]),
        Option(("-n",), "= --n-points", {"type": int}, to="n_points"),
        Option(("--lim",), "start and end of the traversal (PC coordinates)", {"type": float, "nargs": 2}),
        Option(("--use-percentile-spacing",), "points at equal percentiles", FLAG),
    ],
    "cleanup": [
        Option(("--weights",), "remove checkpoints", FLAG),
        Option(("--zfiles",), "remove latents", FLAG),
        Option(("--volumes",), "remove analysis volumes", FLAG),
        Option(("--test",), "= --dry-run", FLAG, to="dry_run", convert=_true),
    ],
}
OPTIONS["backproject_voxel"] = OPTIONS["backproject"]


# --- registering and translating ------------------------------------------------------------------------------------
def add_group(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the "tomoDRGN-compatible options" group of ``command`` (nothing when tomoDRGN has no such command)."""
    options = OPTIONS.get(command)
    if not options:
        return
    group = parser.add_argument_group(GROUP_TITLE, GROUP_DESCRIPTION)
    for o in options:
        kind = {"default": None, **o.kind}
        help_ = o.help if o.note is None else f"{o.help} (here: {o.note})"
        if kind.get("action") is None and "choices" not in kind and "metavar" not in kind:
            kind["metavar"] = o.dest[3:].upper()  # NUM_EPOCHS, not TD_NUM_EPOCHS
        try:
            if o.flags[0].startswith("-"):
                group.add_argument(*o.flags, dest=o.dest, help=help_, **kind)
            else:  # a positional tomoDRGN takes where we take an option
                group.add_argument(o.dest, help=help_, **kind)
        except argparse.ArgumentError:  # the same spelling is ours already, with the same meaning (--num-workers)
            continue


def given(args: argparse.Namespace) -> list[Option]:
    """The tomoDRGN-spelled options of the command line (in table order)."""
    return [o for o in OPTIONS.get(args.command, []) if getattr(args, o.dest, None) is not None]


def translate(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    """Turn the tomoDRGN-spelled options of parsed ``args`` into ours, in place (module docstring); ``note`` prints
    each ``note:`` line once. Raises :class:`CompatUsageError` or :class:`tomodrgn.api.InputError`."""
    for o in OPTIONS.get(args.command, []):  # an option whose spelling is ours too was not added
        if not hasattr(args, o.dest):
            setattr(args, o.dest, None)
    used = given(args)
    args.tomodrgn_spelling = bool(used) or args.command == "backproject_voxel"
    said = set()
    for o in used:
        value = getattr(args, o.dest)
        if o.note is not None:
            line = f"note: {o.flags[-1]}: {o.note}"
            if line not in said:
                said.add(line)
                note(line)
        elif o.to is not None and hasattr(args, o.to):
            setattr(args, o.to, (o.convert or _same)(value))
    adapter = ADAPTERS.get(args.command)
    if adapter is not None:
        adapter(args, note)


# --- helpers of the adapters ----------------------------------------------------------------------------------------
def _error(message: str) -> Exception:
    from tomodrgn import api

    return api.InputError(message)


def _refuse(args: argparse.Namespace, dest: str, flag: str, allowed: tuple, instead: str) -> None:
    """An option whose given value has no counterpart here (its default is accepted): one line naming it."""
    value = getattr(args, dest, None)
    if value is not None and value not in allowed:
        raise _error(f"{flag} {value}: not available here; {instead}")


def _required(args: argparse.Namespace, dest: str, spelling: str) -> None:
    if getattr(args, dest, None) is None:
        raise CompatUsageError(f"the following arguments are required: {spelling}")


def _replaces(args: argparse.Namespace, path: Path, note: Callable[[str], None]) -> None:
    """tomoDRGN replaces an existing output: so does its spelling here (``--overwrite``), with one note."""
    path = Path(path)
    if args.tomodrgn_spelling and path.exists() and (path.is_file() or any(path.iterdir())):
        note(f"note: {path} exists: replacing what this command writes there, as tomoDRGN does")
        args.overwrite = True


def _source(args: argparse.Namespace, star: Path) -> str:
    """Our flavour for ``--source-software`` (``auto`` when not given); a flavour the file does not have is one line
    saying what the file looks like."""
    software = args.td_source_software
    if software is None:
        return "auto"
    flavour = SOURCE_FLAVOUR[software]
    if flavour is None:
        raise _error(f"--source-software {software}: not read here; tomodrgn reads Warp/M, RELION 5 / WarpTools and "
                     "nextPYP particle STAR files (--source-software auto)")  # fmt: skip
    from tomodrgn import api

    found = api.star_flavour(Path(star)) if flavour != "auto" else None
    if found is not None and found != flavour:
        raise _error(f"--source-software {software}: {star} looks like {FLAVOUR_WORDS[found]}; give "
                     "--source-software auto")  # fmt: skip
    return flavour


def _reader(args: argparse.Namespace, star: Path, first_tilts: bool = False) -> None:
    """The reading options of every command that reads particles (``first_tilts``: it takes --n-tilts)."""
    _source(args, star)
    _refuse(args, "td_ind_imgs", "--ind-imgs", (), "select particles with --ind-ptcls (or our --ind)")
    _refuse(args, "td_sort_ptcl_imgs", "--sort-ptcl-imgs", ("unsorted",), "images are used in STAR order")
    n = getattr(args, "td_use_first_nptcls", None)
    if n is not None and n > 0:
        args.first = n
    n = getattr(args, "td_use_first_ntilts", None)
    if n is not None and n > 0:
        if not first_tilts:
            raise _error(f"--use-first-ntilts {n}: not available for {args.command}; every tilt is used")
        args.n_tilts, args.sequential_tilts = n, True


def run_file(path: Path) -> tuple[Path, int | None] | None:
    """(run folder, epoch or None for the latest) of a file tomoDRGN's training writes and later commands read
    (``weights.pkl``, ``weights.N.pkl``, ``config.pkl``, ``z.train.pkl``, ``z.N.train.pkl``), when its folder is a
    training run of ours; None otherwise."""
    from tomodrgn.api import RunFolder

    m = re.fullmatch(r"(?:weights|z)(?:\.(\d+))?(?:\.train)?\.pkl|config\.pkl", Path(path).name)
    if m is None or not RunFolder(Path(path).parent).is_run():
        return None
    return Path(path).parent, (int(m.group(1)) if m.group(1) is not None else None)


def labels_file(path: Path) -> Path:
    """``analyze``'s ``kmeansK/labels.pkl`` as tomoDRGN names it: ours is ``labels.npy`` beside it (same labels)."""
    path = Path(path)
    ours = path.with_suffix(".npy")
    return ours if path.name == "labels.pkl" and not path.exists() and ours.exists() else path


def latents_file(path: Path) -> Path:
    """``z.train.pkl`` / ``z.N.train.pkl`` of a run of ours trained in our spelling: its ``z.npy`` / ``z.N.npy``."""
    from tomodrgn.api import RunFolder

    where = None if Path(path).exists() else run_file(path)
    if where is None or not Path(path).name.startswith("z."):
        return Path(path)
    run = RunFolder(where[0])
    return run.z_link if where[1] is None else run.z(where[1])


def answers(path: Path) -> bool:
    """Whether ``path``, a file a tomoDRGN command line reads, is here or answered by a run folder of ours."""
    return Path(path).exists() or run_file(path) is not None or labels_file(path).exists()


def _run_of(args: argparse.Namespace, *dests: str) -> tuple[Path, int | None]:
    """The run (and epoch) named by tomoDRGN's ``--weights`` / ``--config`` / ``--zfile`` options."""
    found = None
    for dest in dests:
        path = getattr(args, dest, None)
        if path is None:
            continue
        where = run_file(path)
        flag = "--" + dest[3:].replace("_", "-")
        if where is None:
            raise _error(f"{flag} {path}: not a file of a tomodrgn training run (weights.pkl, weights.N.pkl, "
                         "config.pkl or z.N.train.pkl in a run folder)")  # fmt: skip
        if found is not None and where[0].resolve() != found[0].resolve():
            raise _error(f"{flag} {path}: another run than {found[0]}")
        if found is None or found[1] is None:
            found = where
    return found


# --- adapters: one per command ----------------------------------------------------------------------------------------
def _volume_options(args: argparse.Namespace, note: Callable[[str], None], unflipped: str = "") -> None:
    """tomoDRGN's post-processing of decoded volumes, done here by eval_vol; --flip is --flip-hand where the command
    has it, else a note says why nothing is mirrored (``unflipped``)."""
    instead = "tomodrgn eval_vol decodes volumes with --box-size, --lowpass and --invert"
    _refuse(args, "td_invert", "--invert", (False,), instead)
    _refuse(args, "td_downsample", "--downsample", (), instead)
    _refuse(args, "td_lowpass", "--lowpass", (), instead)
    if getattr(args, "td_flip", None) and not hasattr(args, "flip_hand"):
        note(f"note: --flip: {unflipped}")


def _output_file(
    args: argparse.Namespace, note: Callable[[str], None], suffixes: tuple[str, ...], example: str
) -> Path | None:
    """tomoDRGN's ``--output FILE`` in place of our ``-o`` folder (one of them required); replaced when it exists."""
    out = args.td_output
    if out is None:
        _required(args, "outdir", f"-o/--outdir (or --output {example})")
        return None
    if args.outdir is not None:
        raise CompatUsageError("give -o/--outdir or --output, not both")
    if out.suffix not in suffixes:
        raise _error(f"--output {out}: a file name ending in {' or '.join(suffixes)}")
    if out.exists():
        note(f"note: --output {out}: replacing it, as tomoDRGN does")
    return out


def _backproject(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _reader(args, args.star)
    args.tilt_weight = args.tilt_weight or bool(args.td_recon_tilt_weight)
    args.dose_weight = args.dose_weight or bool(args.td_recon_dose_weight)
    out = _output_file(args, note, (".mrc",), "F.mrc")
    if out is not None:
        args.outdir, args.map_name, args.overwrite = out.parent, out.stem, True


def _downsample(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _required(args, "box_size", "-D (or --downsample)")
    if args.td_is_vol:
        _required(args, "td_output", "--output (the downsampled map)")
        args.func = _downsample_map
        return
    flavour = _source(args, args.star)
    if flavour != "auto":
        args.source = flavour
    out = _output_file(args, note, (".mrcs", ".mrc"), "F.mrcs")
    if out is not None:
        args.outdir, args.overwrite = out.with_suffix(""), True
        args.func = _one_stack(args.func, out, bool(args.td_write_tiltseries_starfile), note)


def _downsample_map(args: argparse.Namespace) -> None:
    """tomoDRGN's ``downsample MAP.mrc --is-vol --downsample N --output F.mrc``: the map Fourier-cropped to N³."""
    from tomodrgn import api

    vol, pixel_size = api.read_mrc(args.star)
    if vol.ndim != 3:
        raise api.InputError(f"{args.star}: --is-vol needs a map (D, D, D), got shape {vol.shape}")
    small, pixel_size = api.postprocess_volume(vol, pixel_size, box_size=args.box_size)
    api.write_mrc(args.td_output, small, pixel_size)
    print(f"wrote {args.td_output} (box {args.box_size} px, {pixel_size:.3f} Å/px)")


def _one_stack(func: Callable, stack: Path, with_star: bool, note: Callable[[str], None]) -> Callable:
    """tomoDRGN's ``downsample --output F.mrcs``: every image in one stack, ``F.star`` beside it on request."""

    def run(args: argparse.Namespace) -> None:
        from tomodrgn import api

        func(args)
        star = api.collect_one_stack(args.outdir, stack, stack.with_suffix(".star") if with_star else None)
        print(f"wrote {stack}" + (f" and {star}" if star is not None else ""))
        if star is not None and star.parent != stack.parent:
            note(f"note: the downsampled set is a RELION 5 / WarpTools set: its STAR files are in {star.parent}")

    return run


def _arch_of(args: argparse.Namespace, dim: str, layers: str, defaults: tuple[int, int], to: str) -> None:
    d, n = getattr(args, dim), getattr(args, layers)
    if d is not None or n is not None:
        setattr(args, to, f"{d if d is not None else defaults[0]}x{n if n is not None else defaults[1]}")


def _train(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _reader(args, args.star, first_tilts=True)
    for flag, dest in (("--recon-tilt-weight", "td_recon_tilt_weight"), ("--recon-dose-weight", "td_recon_dose_weight"),
                       ("--l-dose-mask", "td_l_dose_mask")):  # fmt: skip
        if getattr(args, dest):
            note(f"note: {flag}: always on in training here (dose and tilt weights, optimal-dose lattice mask)")
    if args.td_window_r is not None or args.td_window_r_outer is not None:
        note("note: --window-r/--window-r-outer: the window runs from 0.75 to 0.95 of the box radius here")
    _refuse(args, "td_l_extent", "--l-extent", (0.5,), "the lattice spans -0.5..0.5 here")
    _refuse(args, "td_pe_type", "--pe-type", ("gaussian",), "the decoder uses gaussian Fourier features")
    _refuse(args, "td_activation", "--activation", ("relu",), "the networks use ReLU")
    if args.command == "train_nn":
        _arch_of(args, "td_dim", "td_layers", (512, 3), "dec_arch")
    else:
        _train_vae(args, note)
    if args.td_load is not None:
        args.resume = True
        if args.td_load != "latest":
            note(f"note: --load {args.td_load}: continuing from the newest checkpoint of -o (--resume)")
    if args.tomodrgn_spelling:
        if not args.resume:
            _replaces(args, args.outdir, note)
        args.func = _with_tomodrgn_latents(args.func)


def _train_vae(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _refuse(args, "td_fraction_train", "--fraction-train", (1.0,), "hold tilt images out with --val-tilts K")
    _refuse(args, "td_beta_control", "--beta-control", (), "the KL weight is --beta")
    _refuse(args, "td_num_seeds", "--num-seeds", (1,), "set pooling has one learned query")
    if args.td_num_heads not in (None, 4):
        note(f"note: --num-heads {args.td_num_heads}: set pooling uses 4 attention heads here")
    _arch_of(args, "td_enc_dim_A", "td_enc_layers_A", (256, 3), "enc_arch_a")
    _arch_of(args, "td_enc_dim_B", "td_enc_layers_B", (256, 3), "enc_arch_b")
    _arch_of(args, "td_dec_dim", "td_dec_layers", (256, 3), "dec_arch")
    if any(getattr(args, d) is not None for d in PER_TILT_ONLY) and args.encoder != "per-tilt":
        args.encoder = "per-tilt"
        note("note: tomoDRGN's encoder options (--enc-*-B, --out-dim-A, --pooling-function, …) select --encoder "
             "per-tilt, tomoDRGN's encoder")  # fmt: skip


def _with_tomodrgn_latents(func: Callable) -> Callable:
    """After training in tomoDRGN's spelling: ``z.N.train.pkl`` and ``z.train.pkl`` as tomoDRGN writes them."""

    def run(args: argparse.Namespace) -> None:
        func(args)
        write_tomodrgn_latents(args.outdir)

    return run


def write_tomodrgn_latents(run_dir: Path) -> list[Path]:
    """``z.{e}.train.pkl`` for every epoch with latents and ``z.train.pkl`` for the latest (μ, then log σ²), as the
    published tomoDRGN writes and reads them."""
    import numpy as np

    from tomodrgn.api import RunFolder, write_latents_pickle

    run = RunFolder(run_dir)
    epochs = run.latent_epochs()
    written = []
    for e, path in [(e, run.tomodrgn_z(e)) for e in epochs] + ([(epochs[-1], run.tomodrgn_z(None))] if epochs else []):
        logvar = np.load(run.logvar(e)) if run.logvar(e).exists() else None
        written.append(write_latents_pickle(path, np.load(run.z(e)), logvar))
    return written


def _convergence_nn(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    mask = args.td_fsc_mask
    if mask is None and args.td_reference_volume is not None:
        mask = "soft"  # tomoDRGN's default
    if mask is not None:
        args.mask = False if mask == "none" else mask
    _replaces(args, args.outdir or Path(args.run) / "convergence_nn", note)


def _convergence_vae(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _volume_options(args, note, "CCs are the same in either hand; nothing is mirrored")
    if args.td_epoch not in (None, "latest"):
        note(f"note: --epoch {args.td_epoch}: every saved epoch is compared with the next")
    _replaces(args, args.outdir or Path(args.run) / "convergence", note)


def _analyze(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _volume_options(args, note)


def _eval_vol(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    found = _run_of(args, "td_weights", "td_config")
    if found is not None:
        args.run, args.epoch = found[0], found[1] if found[1] is not None else args.epoch
    _required(args, "run", "run")
    if args.zfile is not None:
        args.zfile = latents_file(args.zfile)
    _replaces(args, args.outdir, note)


def _eval_images(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    found = _run_of(args, "td_weights", "td_config")
    if found is not None:  # tomoDRGN: eval_images PARTICLES --weights W -c C
        if args.star is not None:
            raise CompatUsageError("with --weights/-c give the particle STAR only (the run is theirs)")
        args.star, (args.run, args.epoch) = args.run, found
    _required(args, "star", "star")
    _reader(args, args.star, first_tilts=True)
    if args.td_uninvert_data or found is not None:
        note("note: particles are embedded with the contrast the run was trained with (its config.json invert)")
    if args.td_out_z is not None:
        args.output = args.td_out_z
        args.td_out_z.parent.mkdir(parents=True, exist_ok=True)
        _replaces(args, args.output, note)


def _analyze_volumes(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    found = _run_of(args, "td_config")
    if found is not None:
        args.run = found[0]
    _required(args, "run", "run (or --config with --voldir)")
    if found is not None and args.voldir is not None and args.outdir is None:
        args.outdir = Path(f"{args.voldir}_analyze_volumes")  # tomoDRGN's default
    if args.mask in MASKS:
        args.mask = {"soft": "auto"}.get(args.mask, args.mask)
    if args.outdir is not None:
        _replaces(args, args.outdir, note)


def _subtomo2chimerax(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    """tomoDRGN's ``subtomo2chimerax STAR --outdir DIR``: the positional is the STAR (ours is -o DIR alone)."""
    if args.positional_outdir is None or args.outdir is None:
        return
    args.tomodrgn_spelling = True
    _volume_options(args, note, "maps are placed in the particles' own hand (a mirrored map would sit wrongly)")
    args.star, args.positional_outdir = args.positional_outdir, None
    args.labels = None if args.labels is None else labels_file(args.labels)
    args.func = _chimerax_mode
    _replaces(args, args.outdir, note)


def _chimerax_mode(args: argparse.Namespace) -> None:
    from tomodrgn import api

    found = _run_of(args, "td_weights", "td_config", "td_zfile")
    scripts = api.tomodrgn_mapback(
        args.star, args.outdir, mode=args.td_mode or "markers", tomogram=args.td_tomoname,
        tomogram_column=args.td_tomo_id_col_override, star_pixel_size=args.td_star_angpix_override,
        indices=args.td_ind, run=None if found is None else found[0], epoch=None if found is None else found[1],
        volume=args.td_vol_path, labels=args.labels, colormap=args.td_colormap, level=args.level,
        marker_radius=args.td_marker_radius_angstrom or 100.0, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"{len(scripts)} ChimeraX script(s): " + ", ".join(str(s) for s in scripts))


def _filter_star(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    _refuse(args, "td_ind_type", "--ind-type", ("particle",), "indices are of particles here")
    if args.td_tomo_id_col is not None and args.td_tomogram is None:
        note("note: --tomo-id-col: used with --tomogram only")
    args.labels = None if args.labels is None else labels_file(args.labels)
    if args.td_starfile_type == "volumeseries":
        args.func = _filter_rows
    if args.td_tomogram is not None:
        if args.td_starfile_type == "optimisation_set":
            raise _error("--tomogram: an optimisation set is written whole; select a tomogram's particles with --ind")
        args.func = _per_tomogram(args.func)
    _replaces(args, args.output, note)


def _per_tomogram(func: Callable) -> Callable:
    """tomoDRGN's ``filter_star --tomogram NAME|all``: after ``-o``, ``<o>_<NAME>.star`` with its rows only."""

    def run(args: argparse.Namespace) -> None:
        from tomodrgn import api

        func(args)
        column = args.td_tomo_id_col or "_rlnMicrographName"
        for path in api.split_star_by_tomogram(args.output, column, args.td_tomogram):
            print(f"wrote {path}")

    return run


def _filter_rows(args: argparse.Namespace) -> None:
    from tomodrgn import api

    labels = api.read_labels(args.labels) if args.labels else None
    indices = api.read_index_list(args.ind) if args.ind else None
    out = api.filter_star_rows(args.star, args.output, indices=indices, labels=labels, keep=args.keep,
                               invert=args.exclude)  # fmt: skip
    print(f"wrote {out}")


def _traversal(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    """tomoDRGN's traversals take a z file (``z.N.train.pkl``) and write the path in z, no volumes."""
    zfile = latents_file(args.run)
    if not zfile.is_file():  # a run folder (or a path our command reports)
        return
    args.tomodrgn_spelling = True
    args.zfile, args.func = zfile, _TRAVERSALS[args.command]
    if args.outdir is None:
        raise CompatUsageError("the following arguments are required: -o (with a z file)")
    _replaces(args, args.outdir, note)


def _read_z(path: Path):
    from tomodrgn import api

    return api.read_latents(path)


def _pc_traversal_z(args: argparse.Namespace) -> None:
    import numpy as np

    from tomodrgn import api

    z = _read_z(args.zfile)
    out = Path(args.outdir)  # tomoDRGN writes its files into the folder, made if new
    out.mkdir(parents=True, exist_ok=True)
    lo, hi = args.td_lim if args.td_lim is not None else (5.0, 95.0)
    pcs = args.pc if args.td_dim is not None else range(1, z.shape[1] + 1)
    for pc in pcs:
        points, _ = api.latent_pc_traversal(z, pc, args.n_points, lo, hi, even_percentiles=bool(
            args.td_use_percentile_spacing))  # fmt: skip
        np.savetxt(out / f"pc{pc}.txt", points)
        print(f"wrote {out / f'pc{pc}.txt'} ({len(points)} points along PC{pc})")


def _graph_traversal_z(args: argparse.Namespace) -> None:
    import pickle

    import numpy as np

    from tomodrgn import api

    z = _read_z(args.zfile)
    out = Path(args.outdir)  # tomoDRGN writes its files into the folder, made if new
    out.mkdir(parents=True, exist_ok=True)
    path = api.graph_path(z, args.anchors, k=args.max_neighbors, avg_neighbors=args.td_avg_neighbors)
    np.savetxt(out / "path_particle_indices.txt", path, fmt="%d")
    with (out / "path_particle_embeddings.pkl").open("wb") as f:
        pickle.dump(z[path].astype(np.float32), f)
    print(f"path through particles {path.tolist()}: {out / 'path_particle_indices.txt'}")


_TRAVERSALS = {"pc_traversal": _pc_traversal_z, "graph_traversal": _graph_traversal_z}


def _cleanup(args: argparse.Namespace, note: Callable[[str], None]) -> None:
    if args.td_weights or args.td_zfiles:
        args.keep_analysed = True
        if not (args.td_weights and args.td_zfiles):
            note("note: a checkpoint and its latents are removed together here")
    if args.td_volumes:
        note("note: --volumes: decoded volumes are kept here; remove analysis folders you no longer need")


ADAPTERS: dict[str, Callable[[argparse.Namespace, Callable[[str], None]], None]] = {
    "backproject": _backproject,
    "backproject_voxel": _backproject,
    "downsample": _downsample,
    "train_nn": _train,
    "train_vae": _train,
    "convergence_nn": _convergence_nn,
    "convergence_vae": _convergence_vae,
    "analyze": _analyze,
    "eval_vol": _eval_vol,
    "eval_images": _eval_images,
    "analyze_volumes": _analyze_volumes,
    "subtomo2chimerax": _subtomo2chimerax,
    "filter_star": _filter_star,
    "graph_traversal": _traversal,
    "pc_traversal": _traversal,
    "cleanup": _cleanup,
}
