"""Defaults of ``tomodrgn demo`` (torch-free, so the CLI parser can show them without loading the pipeline)."""

#: Simulation and run-length defaults, sized so the whole demo (simulate + train + evaluate + analyse) finishes in
#: about 10 minutes on 2 CPU cores. ``snr`` is that of the 0° image (the simulator's default).
DEMO_DEFAULTS = {"n_particles": 2000, "box_size": 32, "epochs": 10, "n_tilts": 41, "snr": 0.05}

#: Training settings of the demo (any of them can be changed with ``config_overrides``): the reference-frame encoder,
#: 11 of the 41 tilts drawn at random per particle and epoch for training (latents are written from all 41), a 128x3
#: decoder and lr 1e-3.
DEMO_TRAIN_DEFAULTS = {
    "encoder": "reference-frame",
    "n_tilts": 11,
    "sequential_tilts": False,
    "dec_arch": "128x3",
    "lr": 1e-3,
    "batch_size": 8,
    "preload": True,
}
