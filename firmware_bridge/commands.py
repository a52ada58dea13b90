"""Plain functions behind ``popcount-learn board ...``: take arguments, return dicts.

They talk to a board only through ``BoardClient`` (no bytes, no frames here) and to the model
only through the emulator and the weight image.
"""

from __future__ import annotations

import struct

from popcount_learn.errors import ConfigError
from popcount_learn.progress import as_progress
from popcount_learn.weight_image import UPLOAD_SPEC_FIELDS, WeightImage, image_crc32, upload_bytes

from .client import BoardClient
from .compare import compare_on_board
from .protocol import BoardInfo


def image_spec_codes(image: WeightImage) -> tuple[int, ...]:
    """The spec fields as the upload stream header carries them (stream order, enum codes)."""
    return struct.unpack_from(f"<{len(UPLOAD_SPEC_FIELDS)}i", upload_bytes_header(image), 8)


def upload_bytes_header(image: WeightImage) -> bytes:
    return upload_bytes(image)[: 8 + 4 * len(UPLOAD_SPEC_FIELDS)]


def describe_info(info: BoardInfo) -> dict:
    return {
        "board": info.board,
        "firmware_version": info.firmware_version,
        "protocol_version": info.protocol_version,
        "max_payload_bytes": info.max_payload_bytes,
        "weight_capacity_bytes": info.weight_capacity_bytes,
        "max_neurons": info.max_neurons,
        "max_layers": info.max_layers,
        "datapath": dict(zip(UPLOAD_SPEC_FIELDS, info.spec_codes)),
        "learning": list(info.learning_codes),
        "image_loaded": info.image_loaded,
        "image_crc32": f"0x{info.image_crc32:08x}",
        "image_bytes": info.image_bytes,
    }


def board_info(port: str, *, trace: bool = False) -> dict:
    with BoardClient(port, trace=trace) as client:
        return describe_info(client.info())


def check_spec(info: BoardInfo, image: WeightImage, image_name: str = "the image") -> None:
    """ConfigError naming the first field in which the board's compiled spec differs."""
    codes = image_spec_codes(image)
    for name, board_v, image_v in zip(UPLOAD_SPEC_FIELDS, info.spec_codes, codes):
        if board_v != image_v:
            raise ConfigError(
                f"the board is built for {name} = {board_v} but {image_name} has {name} = {image_v}; "
                "start a board built for the image's spec (popcount-learn board virtual --image ...)"
            )


def upload_image(client: BoardClient, image: WeightImage, *, image_name: str = "the image", progress=None) -> dict:
    """Check the spec, upload, commit; the board must report the image's CRC-32."""
    info = client.info()
    check_spec(info, image, image_name)
    stream = upload_bytes(image)
    if len(stream) > info.weight_capacity_bytes:
        raise ConfigError(
            f"{image_name} needs {len(stream)} bytes of weight memory, the board has {info.weight_capacity_bytes}"
        )
    crc = image_crc32(image)
    board_crc = client.load_image(stream, crc, progress=progress)
    if board_crc != crc:
        raise ConfigError(f"board reports image CRC-32 0x{board_crc:08x} after upload, expected 0x{crc:08x}")
    return {"image_bytes": len(stream), "image_crc32": f"0x{crc:08x}"}


def board_compare(port: str, image_path, *, limit: int | None = None, data_dir=None, progress=None,
                  batch_size: int | None = None, trace: bool = False) -> dict:
    """Upload ``image_path`` and run test images on board and emulator; compare every field.

    Returns {n, mismatches, first_mismatch (full text or None), mismatched_images (first 20),
    board_accuracy, emulator_accuracy, image_crc32}.
    """
    from popcount_learn.commands import _load_split
    from popcount_learn.h5io import load_weight_image

    image = load_weight_image(image_path)
    images, labels, _ = _load_split(data_dir, "test", limit)
    progress = as_progress(progress)
    with BoardClient(port, trace=trace) as client:
        upload = upload_image(client, image, image_name=str(image_path))
        summary = compare_on_board(client, image, images, labels=labels, batch_size=batch_size, progress=progress)
    summary.update(upload)
    return summary
