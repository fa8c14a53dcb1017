"""load_image, load_audio and item_digest."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from transferkit.data import check_wav_complete, decode, item_digest, load_audio, load_image
from transferkit.errors import DataError

# --- images -----------------------------------------------------------------------------------


def test_load_image_from_a_path_is_rgb(tmp_path: Path, write) -> None:
    path = write.png(tmp_path / "a.png", color=(10, 20, 30), size=9)
    for item in (path, str(path)):
        image = load_image(item)
        assert image.mode == "RGB" and image.size == (9, 9)
        assert image.getpixel((0, 0)) == (10, 20, 30)


def test_load_image_converts_palette_gray_and_alpha_images(tmp_path: Path) -> None:
    Image.new("L", (4, 3), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (4, 3), (1, 2, 3, 0)).save(tmp_path / "alpha.png")
    Image.new("RGB", (4, 3), (9, 9, 9)).convert("P").save(tmp_path / "pal.gif")
    assert load_image(tmp_path / "gray.png").getpixel((0, 0)) == (77, 77, 77)
    assert load_image(tmp_path / "alpha.png").getpixel((0, 0)) == (1, 2, 3)
    assert load_image(tmp_path / "pal.gif").mode == "RGB"
    assert load_image(Image.new("LA", (2, 2))).mode == "RGB"


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (6, 2), (50, 60, 70))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (2, 6)


@pytest.mark.parametrize(
    ("array", "pixel"),
    [
        (np.full((5, 4), 200, dtype=np.uint8), (200, 200, 200)),
        (np.full((5, 4, 1), 7, dtype=np.uint8), (7, 7, 7)),
        (np.dstack([np.full((5, 4), v, dtype=np.uint8) for v in (1, 2, 3)]), (1, 2, 3)),
        (np.dstack([np.full((5, 4), v, dtype=np.uint8) for v in (1, 2, 3, 0)]), (1, 2, 3)),
        (np.full((5, 4, 3), 1.0, dtype=np.float32), (255, 255, 255)),
        (np.full((5, 4), 0.5), (128, 128, 128)),
    ],
)
def test_load_image_from_arrays(array: np.ndarray, pixel: tuple[int, int, int]) -> None:
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (4, 5)
    assert image.getpixel((0, 0)) == pixel


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((5, 4, 2), dtype=np.uint8), "got shape \\(5, 4, 2\\)"),
        (np.zeros((2, 5, 4, 3), dtype=np.uint8), "got shape"),
        (np.full((5, 4), 255.0), "values in \\[0, 1\\]; got \\[255, 255\\]"),
        (np.full((5, 4), np.nan), "NaN"),
        (np.full((5, 4), 300, dtype=np.int32), "\\[0, 255\\]"),
    ],
)
def test_load_image_rejects_bad_arrays(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_image(array)


def test_load_image_names_bad_files(tmp_path: Path, write) -> None:
    corrupt = write.corrupt_jpeg(tmp_path / "corrupt.jpg")
    truncated = write.truncated_jpeg(tmp_path / "truncated.jpg")
    with pytest.raises(DataError, match=f"{corrupt}: not a readable image"):
        load_image(corrupt)
    with pytest.raises(DataError, match=f"{truncated}: corrupt or truncated image"):
        load_image(truncated)
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="cannot read an image from a list"):
        load_image([1, 2])


def _grey(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(image)
    assert image.mode == "RGB" and (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0].astype(int)


def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)  # 0 .. 65280
    Image.fromarray(values).save(tmp_path / "g16.png")
    grey = _grey(load_image(tmp_path / "g16.png"))
    assert np.abs(grey - values.astype(float) * 255 / 65535).max() <= 0.5
    assert grey.min() == 0 and grey.max() >= 253


def test_a_32_bit_integer_tiff_is_scaled_by_its_value_range(tmp_path: Path) -> None:
    values = (np.arange(16 * 16).reshape(16, 16) * 100_000 - 3_000_000).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "i32.tif")
    grey = _grey(load_image(tmp_path / "i32.tif"))
    expected = (values - float(values.min())) * 255 / (float(values.max()) - values.min())
    assert np.abs(grey - expected).max() <= 0.5 and len(np.unique(grey)) > 200


def test_float_tiffs_in_0_1_are_scaled_by_255_others_by_their_range(tmp_path: Path) -> None:
    unit = (np.arange(16 * 16).reshape(16, 16) / 255).astype(np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert np.abs(_grey(load_image(tmp_path / "unit.tif")) - unit * 255).max() <= 0.5
    Image.fromarray(unit * 1000 - 20).save(tmp_path / "wide.tif")
    grey = _grey(load_image(tmp_path / "wide.tif"))
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 200


def test_a_float_tiff_with_nan_is_refused_naming_the_file(tmp_path: Path) -> None:
    values = np.zeros((8, 8), dtype=np.float32)
    values[2, 3] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match="nan.tif.*NaN"):
        load_image(tmp_path / "nan.tif")


def test_an_extreme_aspect_ratio_is_refused_from_the_header_naming_the_file(tmp_path: Path) -> None:
    Image.new("L", (1, 120_000)).save(tmp_path / "strip.png")
    assert (tmp_path / "strip.png").stat().st_size < 2000
    with pytest.raises(DataError, match=r"strip.png: extreme aspect ratio \(1x120000"):
        load_image(tmp_path / "strip.png")
    with pytest.raises(DataError, match="extreme aspect ratio"):
        load_image(np.zeros((2, 200), dtype=np.uint8))
    wide = tmp_path / "wide.png"
    Image.new("L", (decode.MAX_ASPECT_RATIO * 4, 4)).save(wide)
    assert load_image(wide).size == (decode.MAX_ASPECT_RATIO * 4, 4)


def test_a_large_image_is_decoded_reduced_with_a_warning_naming_it(tmp_path: Path, monkeypatch) -> None:
    Image.new("RGB", (300, 200), (40, 80, 120)).save(tmp_path / "big.jpg")
    Image.new("RGB", (300, 200), (40, 80, 120)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # over it, under twice it
    monkeypatch.setattr(decode, "LARGE_IMAGE_SIDE", 64)
    for name in ("big.jpg", "big.png"):
        with pytest.warns(decode.LargeImageWarning, match=f"{name}: large image \\(300x200"):
            image = load_image(tmp_path / name)
        assert 32 <= max(image.size) <= 64 and image.size[0] > image.size[1]
        assert np.abs(np.asarray(image).astype(int) - (40, 80, 120)).max() <= 3


# --- audio ------------------------------------------------------------------------------------


def test_load_audio_resamples_a_file_to_the_target_rate(tmp_path: Path, write) -> None:
    path = write.wav(tmp_path / "a.wav", freq=440, sample_rate=8000, seconds=0.5)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.shape == (8000,)  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 4
    assert load_audio(str(path), sample_rate=8000).shape == (4000,)


def test_load_audio_averages_stereo(tmp_path: Path) -> None:
    left = np.full(1600, 0.5, dtype=np.float32)
    sf.write(tmp_path / "s.flac", np.stack([left, -left * 0.5], axis=1), 16000)
    wave = load_audio(tmp_path / "s.flac")
    assert wave.shape == (1600,)
    np.testing.assert_allclose(wave, 0.125, atol=1e-3)


def test_load_audio_from_arrays_and_pairs() -> None:
    mono = np.linspace(-1, 1, 1600)
    out = load_audio(mono)
    assert out.dtype == np.float32 and out.shape == (1600,)
    assert load_audio((mono.astype(np.float32), 8000)).shape == (3200,)
    assert load_audio((mono, np.int64(48000))).shape == (534,)
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_allclose(load_audio(pcm), [0, 0.5, -1])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (np.zeros((100, 2), dtype=np.float32), "must be 1-D"),
        (np.zeros(0, dtype=np.float32), "empty waveform"),
        (np.array([0.0, np.inf]), "NaN or infinite"),
        ((np.zeros(10), 0), "positive integer"),
        ((np.zeros(10), 8000.0), "positive integer"),
        ([0.0, 0.1], "cannot read audio from a list"),
    ],
)
def test_load_audio_rejects_bad_arrays(item: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_audio(item)


def test_truncated_wav_is_detected_although_libsndfile_reads_it(tmp_path: Path, write) -> None:
    path = write.truncated_wav(tmp_path / "cut.wav")
    assert len(sf.read(path)[0]) > 0  # libsndfile alone would hand back a shorter clip
    with pytest.raises(DataError, match=f"{path}: truncated WAV file: header declares 8000 bytes"):
        load_audio(path)


def test_wav_header_only_empty_and_garbage_files(tmp_path: Path, write) -> None:
    full = write.wav(tmp_path / "full.wav")
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(full.read_bytes()[:44])
    with pytest.raises(DataError, match=f"{header_only}: truncated WAV"):
        load_audio(header_only)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"{empty}: not a readable audio file"):
        load_audio(empty)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(DataError, match=f"{silent}: audio file holds no samples"):
        load_audio(silent)
    with pytest.raises(DataError, match="no such file"):
        load_audio(tmp_path / "missing.wav")


def test_complete_and_streamed_wavs_pass_the_header_check(tmp_path: Path, write) -> None:
    full = write.wav(tmp_path / "full.wav")
    check_wav_complete(full)
    streamed = tmp_path / "streamed.wav"
    data = bytearray(full.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"  # size unknown, as written to a pipe
    streamed.write_bytes(bytes(data))
    check_wav_complete(streamed)


# --- digests ----------------------------------------------------------------------------------


def test_item_digest_of_files_depends_on_content_only(tmp_path: Path, write) -> None:
    a = write.png(tmp_path / "a.png", color=(1, 2, 3))
    copy = tmp_path / "sub" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(a, copy)
    b = write.png(tmp_path / "b.png", color=(3, 2, 1))
    assert item_digest(a) == item_digest(copy) != item_digest(b)
    assert len(item_digest(a)) == 64


def test_item_digest_of_texts_arrays_and_images() -> None:
    assert item_digest("hello") == item_digest("hello") != item_digest("hello!")
    x = np.arange(12, dtype=np.uint8)
    assert item_digest(x) == item_digest(x.copy())
    assert item_digest(x) != item_digest(x.reshape(3, 4))
    assert item_digest(x) != item_digest(x.astype(np.int16))
    assert item_digest(x[::2]) == item_digest(np.ascontiguousarray(x[::2]))
    red, blue = Image.new("RGB", (2, 2), "red"), Image.new("RGB", (2, 2), "blue")
    assert item_digest(red) == item_digest(red.copy()) != item_digest(blue)
    assert item_digest(red) != item_digest(red.convert("RGBA"))
    wave = np.zeros(10, dtype=np.float32)
    assert item_digest((wave, 8000)) != item_digest((wave, 16000))


def test_item_digest_of_a_str_is_text_not_a_file(tmp_path: Path, write) -> None:
    path = write.png(tmp_path / "a.png")
    assert item_digest(str(path)) != item_digest(path)
    with pytest.raises(DataError, match="cannot read file"):
        item_digest(tmp_path / "missing.png")
    with pytest.raises(DataError, match="cannot hash"):
        item_digest(3.5)
