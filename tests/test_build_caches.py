"""The firmware and RTL build caches reuse only what they wrote (issue 18): a truncated binary,
object or compiled simulation is rebuilt, not run; the default caches are the user's own."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from factories import random_weight_image

from firmware_bridge.boards import build
from firmware_bridge.errors import FirmwareBuildError, RtlSimulationError
from firmware_bridge.rtl import sim as rtl_sim
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_default_caches_are_the_users_not_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv(build.BUILD_ROOT_ENV, raising=False)
    monkeypatch.delenv(rtl_sim.BUILD_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert build.default_build_root() == tmp_path / "cache" / "popcount-learn" / "firmware"
    assert rtl_sim.default_build_root() == tmp_path / "cache" / "popcount-learn" / "rtl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert rtl_sim.default_build_root() == tmp_path / "home" / ".cache" / "popcount-learn" / "rtl"


def test_a_cache_that_belongs_to_someone_else_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("handing a directory to another user needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 4321, 4321)
    with pytest.raises(FirmwareBuildError, match="belongs to user id 4321, not to you"):
        build.prepare_build(build_root=theirs)
    with pytest.raises(RtlSimulationError, match="belongs to user id 4321, not to you"):
        rtl_sim._own_cache_dir(theirs)


@pytest.mark.firmware
@pytest.mark.parametrize("damage", ["binary", "object"])
def test_a_truncated_cached_firmware_file_is_rebuilt_not_reused(tmp_path, damage):
    root = tmp_path / "fw"
    binary = build.build_firmware(build_root=root)
    intact = sha(binary)
    victim = binary if damage == "binary" else sorted((binary.parent / "obj").rglob("pcl_infer.o"))[0]
    before = sha(victim)
    truncate(victim)
    os.utime(victim)  # newer than its sources: make alone would call it up to date
    again = build.build_firmware(build_root=root)
    assert again == binary and sha(victim) == before and sha(binary) == intact
    r = subprocess.run([str(binary)], input=b"", capture_output=True, timeout=30)  # it runs: EOF ends it
    assert r.returncode == 0, r.stderr


@pytest.mark.firmware
def test_a_damaged_file_no_manifest_knows_is_fixed_by_a_clean_rebuild(tmp_path):
    root = tmp_path / "fw"
    binary = build.build_firmware(build_root=root)
    intact = sha(binary)
    (binary.parent / build.MANIFEST).unlink()  # a cache from before manifests
    obj = sorted((binary.parent / "obj").rglob("pcl_proto.o"))[0]
    truncate(obj)
    os.utime(obj)
    (binary.parent / "gen" / "pcl_datapath.h").touch()  # make relinks, from the damaged object
    assert build.build_firmware(build_root=root) == binary  # the link failed once, then built clean
    assert sha(binary) == intact


@pytest.mark.rtl
def test_a_truncated_cached_simulation_is_rebuilt_not_reused(tmp_path):
    root = tmp_path / "rtl"
    image = random_weight_image(3, spec=DatapathConfig.for_weight_bits(8), topology=(12, 6, 3))
    image = type(image)(
        image.spec, tuple(type(la)(la.weights_lsb, 300, la.scale) for la in image.layers), image.provenance
    )
    pixels = np.random.default_rng(0).integers(0, 256, (2, 12), dtype=np.uint8)
    _, build_dir = rtl_sim.build(RtlLayout.for_image(image, 2), batch_images=len(pixels), build_root=root)
    vvp = build_dir / "sim.vvp"
    size = vvp.stat().st_size
    truncate(vvp)
    result = rtl_sim.simulate(image, pixels, lanes=2, build_root=root)  # used to fail: "Skipping compilation"
    assert vvp.stat().st_size == size and (build_dir / rtl_sim.VVP_DIGEST).read_text().strip() == sha(vvp)
    expected = emulate(image, pixels)
    np.testing.assert_array_equal(result.predicted, expected.predicted)
    np.testing.assert_array_equal(result.first_output_step, expected.first_output_step)
