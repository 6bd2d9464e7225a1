"""STAR helpers: blocks, optics join, image names, flavour detection and their error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import detect_flavour, read_particles
from tomodrgn.io.star import (
    find_optics_block,
    find_particle_block,
    join_optics,
    read_star,
    require_columns,
    split_image_name,
    write_star,
)


def test_input_error_is_value_error():
    assert issubclass(InputError, ValueError)


def test_read_write_keeps_blocks_in_order(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnVoltage": [300.0, 200.0], "rlnImagePixelSize": [1.5, 1.5]})
    parts = pd.DataFrame({"rlnImageName": ["1@a.mrcs", "2@a.mrcs", "1@b.mrcs"], "rlnOpticsGroup": [2, 1, 2]})
    out = write_star({"optics": optics, "particles": parts}, tmp_path / "x.star")
    blocks = read_star(out)
    assert list(blocks) == ["optics", "particles"]
    pd.testing.assert_frame_equal(blocks["particles"], parts)
    assert find_optics_block(blocks) == "optics" and find_particle_block(blocks, out) == "particles"
    joined = join_optics(blocks["particles"], blocks["optics"], out)
    assert joined["rlnVoltage"].tolist() == [200.0, 300.0, 200.0]
    assert list(joined["rlnImageName"]) == list(parts["rlnImageName"])
    assert not (tmp_path / "x.star.tmp").exists()


def test_single_block_file_without_optics(tmp_path):
    starfile.write({"": pd.DataFrame({"rlnImageName": ["1@s.mrcs"], "rlnGroupName": ["t_1"]})}, tmp_path / "a.star")
    blocks = read_star(tmp_path / "a.star")
    assert find_optics_block(blocks) is None and find_particle_block(blocks, tmp_path / "a.star") == ""
    assert join_optics(blocks[""], None, tmp_path / "a.star") is blocks[""]


def test_optics_group_missing_from_optics_block(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0]})
    parts = pd.DataFrame({"rlnImageName": ["1@a.mrcs"], "rlnOpticsGroup": [3]})
    with pytest.raises(InputError, match=r"optics group\(s\) \['3'\]"):
        join_optics(parts, optics, tmp_path / "p.star")


def test_split_image_name(tmp_path):
    idx, stacks = split_image_name(["1@a.mrcs", "000012@sub/b.mrcs", "c.mrcs"], tmp_path / "p.star")
    assert idx.tolist() == [0, 11, 0] and stacks.tolist() == ["a.mrcs", "sub/b.mrcs", "c.mrcs"]
    with pytest.raises(InputError, match=r"row 1: bad _rlnImageName 'x@a.mrcs'"):
        split_image_name(["1@a.mrcs", "x@a.mrcs"], tmp_path / "p.star")
    with pytest.raises(InputError, match="1-based"):
        split_image_name(["0@a.mrcs"], tmp_path / "p.star")


def test_require_columns_names_the_column(tmp_path):
    with pytest.raises(InputError, match="_rlnAngleTilt is missing") as e:
        require_columns(pd.DataFrame({"rlnAngleRot": [1.0]}), ["rlnAngleRot", "rlnAngleTilt"], tmp_path / "p.star", "")
    assert "p.star" in str(e.value)


def test_missing_or_unparsable_star(tmp_path):
    with pytest.raises(InputError, match="STAR file not found"):
        read_star(tmp_path / "nope.star")
    with pytest.raises(InputError, match="STAR file not found"):
        read_particles(tmp_path / "nope.star")


@pytest.mark.parametrize(
    ("columns", "flavour"),
    [
        (["rlnImageName", "rlnGroupName"], "warp"),
        (["rlnImageName", "rlnTomoName", "rlnTomoParticleName"], "relion5"),
        (["rlnImageName", "rlnTiltIndex", "rlnGroupNumber"], "nextpyp"),
    ],
)
def test_detect_flavour(tmp_path, columns, flavour):
    assert detect_flavour(pd.DataFrame(columns=columns), tmp_path / "p.star") == flavour


def test_unknown_flavour_and_source(tmp_path):
    with pytest.raises(InputError, match="cannot tell the STAR flavour"):
        detect_flavour(pd.DataFrame(columns=["rlnImageName"]), tmp_path / "p.star")
    starfile.write({"particles": pd.DataFrame({"rlnImageName": ["1@a.mrcs"]})}, tmp_path / "p.star")
    with pytest.raises(InputError, match="unknown source 'cryosparc'"):
        read_particles(tmp_path / "p.star", source="cryosparc")
    with pytest.raises(InputError, match="cannot tell the STAR flavour"):
        read_particles(tmp_path / "p.star")


def test_pixel_size_argument_overrides_file_with_warning(tmp_path):
    from tomodrgn.io.mrc import write_mrc

    write_mrc(tmp_path / "a.mrcs", np.random.default_rng(0).normal(size=(2, 4, 4)), pixel_size=2.0)
    df = pd.DataFrame(
        {
            "rlnImageName": ["1@a.mrcs", "2@a.mrcs"],
            "rlnGroupName": ["t_1", "t_1"],
            "rlnAngleRot": 0.0,
            "rlnAngleTilt": 0.0,
            "rlnAnglePsi": 0.0,
            "rlnDefocusU": 1e4,
            "rlnVoltage": 300.0,
            "rlnSphericalAberration": 2.7,
            "rlnAmplitudeContrast": 0.07,
            "rlnCtfBfactor": [-12.0, -24.0],
            "rlnCtfScalefactor": 1.0,
            "rlnImagePixelSize": 2.0,
        }
    )
    starfile.write({"": df}, tmp_path / "p.star")
    assert read_particles(tmp_path / "p.star").pixel_size == 2.0
    with pytest.warns(UserWarning, match="overrides 2.0"):
        assert read_particles(tmp_path / "p.star", pixel_size=3.0).pixel_size == 3.0
