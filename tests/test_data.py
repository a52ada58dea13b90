"""IDX parsing and MNIST loading: the shipped dataset, every error path, IDX round trips."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from popcount_learn import data
from popcount_learn.data import default_data_dir, load_mnist, read_idx
from popcount_learn.errors import ConfigError, DatasetError

TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Reference IDX encoder: 00 00 <type> <ndim>, big-endian uint32 dims, raw C-order bytes."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, payload: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_sums(directory: Path, names) -> None:
    lines = [f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n" for n in names]
    (directory / "SHA256SUMS").write_text("".join(lines))


def make_test_split(directory: Path, n_images=5, n_labels=None, rows=4, cols=3, gz=True, sums=True, seed=0):
    """Write a random 'test' split; returns (images (n, rows, cols), labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_images if n_labels is None else n_labels, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_file(directory / (TEST_IMAGES + suffix), idx_bytes(images), gz)
    write_file(directory / (TEST_LABELS + suffix), idx_bytes(labels), gz)
    if sums:
        write_sums(directory, [TEST_IMAGES + suffix, TEST_LABELS + suffix])
    return images, labels


# --- the shipped dataset ---------------------------------------------------------------------


def raw_idx_payload(path: Path, header_bytes: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress(path.read_bytes())[header_bytes:], dtype=np.uint8)


def test_shipped_test_split(mnist_dir):
    split = load_mnist(mnist_dir, "test")
    images, labels = split
    assert images.shape == (10000, 28 * 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert split.image_shape == (28, 28) and split.verified and split.n_classes == 10
    assert set(np.unique(labels)) == set(range(10))
    # Independent decode: an MNIST idx3 header is 16 bytes, idx1 is 8.
    np.testing.assert_array_equal(images.ravel(), raw_idx_payload(mnist_dir / f"{TEST_IMAGES}.gz", 16))
    np.testing.assert_array_equal(labels, raw_idx_payload(mnist_dir / f"{TEST_LABELS}.gz", 8))
    bright_fraction = np.mean(images > 128)
    assert abs(bright_fraction - 0.1325) < 0.0005


def test_shipped_train_split(mnist_dir):
    images, labels = load_mnist(mnist_dir, "train")
    assert images.shape == (60000, 784) and labels.shape == (60000,)
    assert labels.min() == 0 and labels.max() == 9
    assert np.all(np.bincount(labels, minlength=10) > 5000)
    assert images.flags.writeable


def test_default_data_dir_is_shipped_copy(mnist_dir):
    assert default_data_dir() == mnist_dir.resolve()


def test_default_data_dir_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "__file__", str(tmp_path / "popcount_learn" / "data.py"))
    with pytest.raises(DatasetError, match=r"--data DIR"):
        default_data_dir()


# --- IDX round trips -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    gz=st.booleans(),
    suffix=st.sampled_from(["", ".gz", ".idx"]),
)
def test_idx_round_trip(tmp_path_factory, array, gz, suffix):
    # A .gz name is always decompressed, so only gzip content can carry that suffix.
    gz = gz or suffix == ".gz"
    path = write_file(tmp_path_factory.mktemp("idx") / f"array{suffix}", idx_bytes(array), gz)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_plain_and_gz_variants_load_identically(tmp_path):
    (tmp_path / "gz").mkdir()
    (tmp_path / "plain").mkdir()
    make_test_split(tmp_path / "gz", gz=True, seed=3)
    images, labels = make_test_split(tmp_path / "plain", gz=False, seed=3)
    a = load_mnist(tmp_path / "gz", "test")
    b = load_mnist(tmp_path / "plain", "test")
    assert a.files[0].name.endswith(".gz") and not b.files[0].name.endswith(".gz")
    assert a.verified and b.verified
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.images, images.reshape(5, 12))
    np.testing.assert_array_equal(a.labels, labels)


def test_gz_preferred_when_both_exist(tmp_path):
    make_test_split(tmp_path, gz=False, sums=False, seed=1)
    gz_images, _ = make_test_split(tmp_path, gz=True, sums=False, seed=2)
    split = load_mnist(tmp_path, "test")
    assert split.files[0].name == TEST_IMAGES + ".gz"
    np.testing.assert_array_equal(split.images, gz_images.reshape(5, 12))


def test_gzip_detected_by_magic_without_suffix(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_file(tmp_path / "no_suffix", idx_bytes(array), gz=True)
    np.testing.assert_array_equal(read_idx(path), array)


def test_labels_beyond_nine_set_n_classes(tmp_path):
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    labels = np.array([0, 200, 7], dtype=np.uint8)
    write_file(tmp_path / TEST_IMAGES, idx_bytes(images), gz=False)
    write_file(tmp_path / TEST_LABELS, idx_bytes(labels), gz=False)
    split = load_mnist(tmp_path, "test")
    assert split.n_classes == 201 and not split.verified


# --- errors ----------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist"):
        load_mnist(tmp_path / "nowhere", "test")


def test_directory_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DatasetError, match=r"afile is not a directory"):
        load_mnist(tmp_path / "afile", "test")


def test_missing_file_lists_names_looked_for(tmp_path):
    make_test_split(tmp_path, sums=False)
    (tmp_path / (TEST_LABELS + ".gz")).unlink()
    with pytest.raises(DatasetError) as err:
        load_mnist(tmp_path, "test")
    assert f"{TEST_LABELS}.gz or {TEST_LABELS}" in str(err.value)


def test_bad_split_name(tmp_path):
    with pytest.raises(ConfigError, match=r"validation"):
        load_mnist(tmp_path, "validation")


@pytest.mark.parametrize(
    "header, expect",
    [
        (bytes([0, 0, 0x0D, 1]), r"00 00 0d 01 \(IDX type float32"),
        (bytes([0x12, 0x34, 0x08, 1]), r"12 34 08 01 \(not an IDX uint8"),
        (bytes([0, 0, 0x07, 1]), r"00 00 07 01"),
    ],
)
def test_wrong_magic(tmp_path, header, expect):
    path = write_file(tmp_path / "bad.idx", header + struct.pack(">I", 2) + b"\0\0", gz=False)
    with pytest.raises(DatasetError, match=r"bad\.idx: bad magic number " + expect):
        read_idx(path)


def test_wrong_magic_in_dataset_names_file(tmp_path):
    make_test_split(tmp_path, sums=False)
    write_file(tmp_path / (TEST_LABELS + ".gz"), b"\x00\x00\x0c\x01" + struct.pack(">I", 1) + bytes(4), gz=True)
    with pytest.raises(DatasetError, match=TEST_LABELS + r"\.gz: bad magic number 00 00 0c 01"):
        load_mnist(tmp_path, "test")


def test_zero_dimensions_and_short_headers(tmp_path):
    for name, payload, expect in [
        ("zero", bytes([0, 0, 8, 0]), "0 dimensions"),
        ("tiny", bytes([0, 0]), "only 2 bytes"),
        ("dims", bytes([0, 0, 8, 3]) + struct.pack(">2I", 4, 4), "3 dimensions need 12 size bytes, found 8"),
    ]:
        path = write_file(tmp_path / name, payload, gz=False)
        with pytest.raises(DatasetError, match=f"{name}: .*{expect}"):
            read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    array = np.ones((3, 4, 5), dtype=np.uint8)
    path = write_file(tmp_path / "short", idx_bytes(array)[:-7], gz)
    with pytest.raises(
        DatasetError, match=r"short: truncated payload: shape \(3, 4, 5\) needs 60 payload bytes, found 53"
    ):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_garbage(tmp_path, gz):
    array = np.ones((3, 4), dtype=np.uint8)
    path = write_file(tmp_path / "long", idx_bytes(array) + b"junk", gz)
    with pytest.raises(DatasetError, match=r"long: trailing bytes after payload: .* needs 12 payload bytes, found 16"):
        read_idx(path)


def test_truncated_file_in_dataset(tmp_path):
    make_test_split(tmp_path, n_images=5, sums=False)
    path = tmp_path / (TEST_IMAGES + ".gz")
    write_file(path, gzip.decompress(path.read_bytes())[:-1], gz=True)
    with pytest.raises(DatasetError, match=TEST_IMAGES + r"\.gz: truncated payload: .* needs 60 .* found 59"):
        load_mnist(tmp_path, "test")


def test_count_mismatch(tmp_path):
    make_test_split(tmp_path, n_images=5, n_labels=4)
    with pytest.raises(DatasetError, match=r"holds 5 images but .*labels-idx1-ubyte\.gz holds 4 labels"):
        load_mnist(tmp_path, "test")


def test_wrong_dimensionality(tmp_path):
    write_file(tmp_path / TEST_IMAGES, idx_bytes(np.zeros((5, 12), dtype=np.uint8)), gz=False)
    write_file(tmp_path / TEST_LABELS, idx_bytes(np.zeros(5, dtype=np.uint8)), gz=False)
    with pytest.raises(DatasetError, match=TEST_IMAGES + r": image file must have 3 dimensions"):
        load_mnist(tmp_path, "test")
    write_file(tmp_path / TEST_IMAGES, idx_bytes(np.zeros((5, 3, 4), dtype=np.uint8)), gz=False)
    write_file(tmp_path / TEST_LABELS, idx_bytes(np.zeros((5, 1), dtype=np.uint8)), gz=False)
    with pytest.raises(DatasetError, match=TEST_LABELS + r": label file must have 1 dimension"):
        load_mnist(tmp_path, "test")


def test_checksum_mismatch(tmp_path):
    make_test_split(tmp_path, seed=4)
    make_test_split(tmp_path, seed=5, sums=False)  # same names, different bytes: stale SHA256SUMS
    with pytest.raises(DatasetError, match=TEST_IMAGES + r"\.gz: SHA-256 checksum mismatch"):
        load_mnist(tmp_path, "test")
    images, _ = make_test_split(tmp_path, seed=5, sums=False)
    split = load_mnist(tmp_path, "test", verify=False)
    assert not split.verified
    np.testing.assert_array_equal(split.images, images.reshape(5, 12))


def test_checksum_for_labels_checked_too(tmp_path):
    make_test_split(tmp_path)
    path = tmp_path / (TEST_LABELS + ".gz")
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[-1] ^= 1
    write_file(path, bytes(payload), gz=True)
    with pytest.raises(DatasetError, match=TEST_LABELS + r"\.gz: SHA-256 checksum mismatch"):
        load_mnist(tmp_path, "test")


def test_file_missing_from_checksums(tmp_path):
    make_test_split(tmp_path, sums=False)
    write_sums(tmp_path, [TEST_IMAGES + ".gz"])
    with pytest.raises(DatasetError, match=TEST_LABELS + r"\.gz: not listed in .*SHA256SUMS"):
        load_mnist(tmp_path, "test")
    assert load_mnist(tmp_path, "test", verify=False).n_samples == 5


def test_checksum_file_formats(tmp_path):
    make_test_split(tmp_path, sums=False)
    names = [TEST_IMAGES + ".gz", TEST_LABELS + ".gz"]
    digests = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names]
    # Binary-mode marker, upper-case hex, blank line and an unrelated entry are all fine.
    (tmp_path / "SHA256SUMS").write_text(
        f"{digests[0].upper()} *{names[0]}\n\n{'0' * 64}  other-file\n{digests[1]}  {names[1]}\n"
    )
    assert load_mnist(tmp_path, "test").verified
    (tmp_path / "SHA256SUMS").write_text(f"{digests[0]}  {names[0]}\nnot a checksum line\n")
    with pytest.raises(DatasetError, match=r"SHA256SUMS, line 2: expected"):
        load_mnist(tmp_path, "test")
    (tmp_path / "SHA256SUMS").write_text(f"{digests[0]}  {names[0]}\n{digests[1]}  {names[0]}\n")
    with pytest.raises(DatasetError, match=r"line 2: .* listed twice"):
        load_mnist(tmp_path, "test")


def test_corrupt_gzip_truncated_stream(tmp_path):
    array = np.arange(200, dtype=np.uint8)
    compressed = gzip.compress(idx_bytes(array))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz: corrupt gzip stream"):
        read_idx(path)


def test_corrupt_gzip_damaged_bytes(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(50, 20), dtype=np.uint8)
    compressed = bytearray(gzip.compress(idx_bytes(array)))
    for offset in range(12, len(compressed) - 8, 97):
        compressed[offset] ^= 0xFF
    path = tmp_path / "damaged.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(DatasetError, match=r"damaged\.gz: corrupt gzip stream"):
        read_idx(path)


def test_gz_suffix_but_not_gzip(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    path = write_file(tmp_path / "plain.gz", idx_bytes(array), gz=False)
    with pytest.raises(DatasetError, match=r"plain\.gz: corrupt gzip stream"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"absent\.idx: no such file"):
        read_idx(tmp_path / "absent.idx")
