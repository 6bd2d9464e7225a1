"""The plugin README's screenshots exist, are 1280×800 (`docs/make_screenshots.py`) and include the 3-D views."""

import re
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "packages" / "napari-tomodrgn" / "README.md"


def test_readme_images_exist_at_1280x800_with_3d_views():
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    paths = [(README.parent / link).resolve() for link in links]
    assert paths and all(p.is_file() for p in paths), [str(p) for p in paths if not p.is_file()]
    for p in paths:
        if p.suffix == ".png":
            assert Image.open(p).size == (1280, 800), p
    names = {p.name for p in paths}
    assert {"latent_click_3d.png", "latent_pc_path_3d.png", "overlay_populated_3d.png", "overlay_turn_3d.png"} <= names
    assert Image.open(ROOT / "docs" / "images" / "latent_path_3d.gif").n_frames > 1
