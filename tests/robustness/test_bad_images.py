"""Bad image inputs, built by code, each fitted through the CLI (see robust_support for the checks)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from robust_support import (
    Built,
    Case,
    audio_folder,
    gif_claiming,
    image_folder,
    jpeg_claiming,
    params,
    png_bytes,
    put,
    run_case,
    skip_and_fail,
    tone,
    write_table,
)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int] = (32, 32), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(1)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def extra_file(name: str, content: Callable[[], bytes]) -> Callable[[Path], Built]:
    """The base folder plus ``tl/NAME`` holding ``content``; the case names that file."""

    def build(root: Path) -> Built:
        image_folder(root)
        return Built(root, names=(str(put(root / "tl" / name, content())),))

    return build


def extra_ok(name: str, content: Callable[[], bytes]) -> Callable[[Path], Built]:
    """The base folder plus a file that must be read as a good image (nothing to name)."""

    def build(root: Path) -> Built:
        image_folder(root)
        put(root / "tl" / name, content())
        return Built(root)

    return build


def valid_png() -> bytes:
    return encoded(noise(), "PNG")


def valid_jpeg() -> bytes:
    return encoded(noise(), "JPEG", quality=90)


def wav_file() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(), 16000, format="WAV")
    return buffer.getvalue()


def tiff(array: np.ndarray) -> bytes:
    return encoded(Image.fromarray(array), "TIFF")


# -- unreadable files: skipped with a warning naming them, or one error naming them (--on-error fail)
UNREADABLE: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("zero-byte", "png", lambda: b"", "empty.png"),
    ("zero-byte", "jpg", lambda: b"", "empty.jpg"),
    ("zero-byte", "tiff", lambda: b"", "empty.tif"),
    ("truncated", "png-half", lambda: valid_png()[: len(valid_png()) // 2], "half.png"),
    ("truncated", "jpeg-half", lambda: valid_jpeg()[: len(valid_jpeg()) // 2], "half.jpg"),
    ("truncated", "png-signature-only", lambda: valid_png()[:8], "sig.png"),
    ("truncated", "png-header-only", lambda: valid_png()[:33], "header.png"),
    ("truncated", "gif-half", lambda: encoded(noise(mode="L"), "GIF")[:40], "half.gif"),
    ("corrupt", "html-named-jpg", lambda: b"<html>404 not found</html>" * 4, "page.jpg"),
    ("corrupt", "random-bytes-png", lambda: np.random.default_rng(2).bytes(3000), "noise.png"),
    ("corrupt", "random-bytes-bmp", lambda: b"BM" + np.random.default_rng(3).bytes(500), "noise.bmp"),
    ("corrupt", "png-bad-crc", lambda: valid_png()[:20] + b"\xff\xff" + valid_png()[22:], "crc.png"),
    ("corrupt", "png-zero-width", lambda: png_bytes(0, 8), "zero-width.png"),
    ("corrupt", "webp-garbage", lambda: b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8, "bad.webp"),
    ("corrupt", "nul-bytes-jpg", lambda: b"\x00" * 4096, "nul.jpg"),
    ("mislabelled", "wav-named-png", wav_file, "sound.png"),
    ("mislabelled", "text-named-tif", lambda: b"id,label\n1,cat\n", "table.tif"),
    ("extreme-aspect", "1x400-png", lambda: encoded(Image.new("L", (1, 400)), "PNG"), "strip.png"),
    ("extreme-aspect", "1x120000-png-header", lambda: png_bytes(120000, 1), "wide.png"),
    ("extreme-aspect", "600x2-jpeg", lambda: encoded(Image.new("RGB", (600, 2)), "JPEG"), "flat.jpg"),
    ("huge", "png-claims-30000x30000", lambda: png_bytes(30000, 30000), "bomb.png"),
    ("huge", "jpeg-claims-60000x60000", lambda: jpeg_claiming(60000, 60000), "bomb.jpg"),
    ("huge", "gif-claims-65535x65535", lambda: gif_claiming(65535, 65535), "bomb.gif"),
    ("high-bit-depth", "float-tiff-with-nan",
     lambda: tiff(np.where(np.eye(16) > 0, np.nan, 0.5).astype(np.float32)), "nan.tif"),
]

# -- unusual but readable files: the fit works and nothing is skipped
READABLE: list[tuple[str, str, Callable[[], bytes]]] = [
    ("high-bit-depth", "16-bit-grey-png",
     lambda: encoded(Image.fromarray(np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)), "PNG")),
    ("high-bit-depth", "32-bit-int-tiff", lambda: tiff(np.arange(32 * 32, dtype=np.int32).reshape(32, 32) * 1000)),
    ("high-bit-depth", "float-tiff-0-1", lambda: tiff(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32))),
    ("high-bit-depth", "float-tiff-wide-range",
     lambda: tiff(np.linspace(-500, 9000, 32 * 32, dtype=np.float32).reshape(32, 32))),
    ("high-bit-depth", "constant-float-tiff", lambda: tiff(np.full((32, 32), 7.5, dtype=np.float32))),
    ("mode", "1-bit-png", lambda: encoded(noise(mode="L").convert("1"), "PNG")),
    ("mode", "palette-png-transparent", lambda: encoded(noise().convert("P"), "PNG", transparency=0)),
    ("mode", "grey-alpha-png", lambda: encoded(noise(mode="L").convert("LA"), "PNG")),
    ("mode", "rgba-png", lambda: encoded(noise(mode="RGBA"), "PNG")),
    ("mode", "cmyk-jpeg", lambda: encoded(noise(mode="CMYK"), "JPEG")),
    ("mode", "animated-gif", lambda: encoded(noise(mode="L"), "GIF", save_all=True,
                                             append_images=[noise(mode="L").rotate(90)])),
    ("mode", "multi-page-tiff", lambda: encoded(noise(), "TIFF", save_all=True, append_images=[noise()])),
    ("size", "1x1-png", lambda: encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")),
    ("size", "49x1-png-aspect-at-limit", lambda: encoded(Image.new("RGB", (49, 1)), "PNG")),
    ("mislabelled", "png-named-jpg", valid_png),
    ("mislabelled", "jpeg-named-png", valid_jpeg),
    ("corrupt", "trailing-garbage-png", lambda: valid_png() + b"garbage" * 100),
    ("corrupt", "broken-exif-jpeg", lambda: encoded(noise(), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")),
]
READABLE_NAMES = {"png-named-jpg": "p.jpg", "jpeg-named-png": "j.png", "float-tiff-0-1": "f.tiff",
                  "cmyk-jpeg": "c.jpeg"}
READABLE_EXT = {"1-bit-png": "png", "palette-png-transparent": "png", "grey-alpha-png": "png", "rgba-png": "png",
                "animated-gif": "gif", "multi-page-tiff": "tif", "1x1-png": "png", "49x1-png-aspect-at-limit": "png",
                "16-bit-grey-png": "png", "32-bit-int-tiff": "tif", "float-tiff-wide-range": "tiff",
                "constant-float-tiff": "tif", "trailing-garbage-png": "png", "broken-exif-jpeg": "jpg"}


# -- folder layouts ----------------------------------------------------------------------------------


def empty_folder(root: Path) -> Built:
    root.mkdir(parents=True)
    return Built(root, names=(str(root),))


def empty_class_folders(root: Path) -> Built:
    (root / "tl").mkdir(parents=True)
    (root / "br").mkdir()
    return Built(root, names=(str(root),))


def one_class(root: Path) -> Built:
    image_folder(root, classes=("tl",))
    return Built(root, names=(str(root), "tl"))


def one_class_folder_empty(root: Path) -> Built:
    image_folder(root)
    (root / "zz").mkdir()
    (root / "zz" / "notes.txt").write_text("no images here")
    return Built(root, names=(str(root / "zz"),))


def class_folder_all_corrupt(root: Path) -> Built:
    image_folder(root)
    for i in range(3):
        put(root / "zz" / f"{i}.jpg", b"not a jpeg")
    return Built(root, names=(str(root / "zz"),))


def every_file_corrupt(root: Path) -> Built:
    for label in ("a", "b"):
        for i in range(2):
            put(root / label / f"{i}.png", b"")
    return Built(root, names=(str(root),))


def flat_folder(root: Path) -> Built:
    image_folder(root / "tmp")
    root.mkdir(exist_ok=True)
    for f in sorted((root / "tmp").rglob("*.png")):
        f.rename(root / f"{f.parent.name}-{f.name}")
    for d in sorted((root / "tmp").iterdir()):
        d.rmdir()
    (root / "tmp").rmdir()
    return Built(root, names=(str(root),))


def top_level_next_to_classes(root: Path) -> Built:
    image_folder(root)
    put(root / "stray.png", valid_png())
    return Built(root, names=(str(root), "stray.png"))


def split_folders(root: Path) -> Built:
    image_folder(root / "train")
    image_folder(root / "val")
    return Built(root, names=(str(root), "train"))


def mixed_image_audio(root: Path) -> Built:
    image_folder(root)
    audio_folder(root, classes=("low",))
    return Built(root, names=(str(root),))


def images_and_audio_in_one_class(root: Path) -> Built:
    image_folder(root)
    put(root / "tl" / "clip.wav", wav_file())
    return Built(root, names=(str(root), "clip.wav"))


def symlink_loop(root: Path) -> Built:
    image_folder(root)
    os.symlink("..", root / "tl" / "loop")
    os.symlink(root / "br", root / "tl" / "to-br")
    return Built(root)


def self_link(root: Path) -> Built:
    image_folder(root)
    os.symlink("self.png", root / "tl" / "self.png")
    return Built(root, names=("self.png",))


def dangling_link(root: Path) -> Built:
    image_folder(root)
    os.symlink(root / "nowhere.png", root / "tl" / "dead.png")
    return Built(root, names=(str(root / "tl" / "dead.png"),))


def linked_image(root: Path) -> Built:
    image_folder(root)
    outside = put(root.parent / "elsewhere" / "x.png", valid_png())
    os.symlink(outside, root / "tl" / "linked.png")
    return Built(root)


def hidden_and_junk(root: Path) -> Built:
    image_folder(root)
    put(root / "tl" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    put(root / "tl" / "._00.png", b"\x00\x05\x16\x07 resource fork")
    put(root / "__MACOSX" / "tl" / "._01.png", b"\x00\x05\x16\x07")
    put(root / ".hidden" / "x.png", b"not read")
    put(root / "README.md", "my images")
    put(root / "br" / "labels.csv", "a,b\n")
    return Built(root)


def folder_named_like_image(root: Path) -> Built:
    image_folder(root)
    (root / "tl" / "album.png").mkdir()
    put(root / "tl" / "album.png" / "inner.png", valid_png())
    return Built(root)


def odd_file_names(root: Path) -> Built:
    image_folder(root)
    for name in ("with space.png", "ünïcödé.png", "new\nline.png", "semi;colon,comma.png", "-dash.png"):
        put(root / "br" / name, valid_png())
    return Built(root)


def non_utf8_file_name(root: Path) -> Built:
    image_folder(root)
    raw = os.fsencode(root / "br") + b"/caf\xe9.png"
    with open(raw, "wb") as f:
        f.write(valid_png())
    return Built(root)


def non_utf8_corrupt_file_name(root: Path) -> Built:
    image_folder(root)
    raw = os.fsencode(root / "br") + b"/bad\xe9.png"
    with open(raw, "wb") as f:
        f.write(b"")
    return Built(root, names=("bad",))


def data_path_missing(root: Path) -> Built:
    root.mkdir(parents=True)
    return Built(root / "nope", names=(str(root / "nope"),))


def single_image_file(root: Path) -> Built:
    image_folder(root)
    return Built(root / "tl" / "00.png", names=(str(root / "tl" / "00.png"),))


def modality(asked: str) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        image_folder(root)
        return Built(root, ("--modality", asked), names=(str(root), asked))

    return build


def unknown_modality(root: Path) -> Built:
    image_folder(root)
    return Built(root, ("--modality", "video"), names=("video",))


def column_option_on_folder(root: Path) -> Built:
    image_folder(root)
    return Built(root, ("--label-column", "y"), names=(str(root), "label_column"))


# -- tables of image paths -----------------------------------------------------------------------------


def path_table(root: Path, extra: list[tuple[str, str]] | None = None, name: str = "images.csv",
               header: tuple[str, str] = ("path", "label")) -> Path:
    image_folder(root)
    rows = [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.rglob("*.png"))]
    return write_table(root / name, rows + (extra or []), header=header)


def table_missing_file(root: Path) -> Built:
    table = path_table(root, [("tl/gone.png", "tl")])
    return Built(table, names=(str(root / "tl" / "gone.png"),))


def table_corrupt_file(root: Path) -> Built:
    put(root / "tl" / "bad.jpg", b"<html>")
    table = path_table(root, [("tl/bad.jpg", "tl")])
    return Built(table, names=(str(root / "tl" / "bad.jpg"),))


def table_empty_path(root: Path) -> Built:
    table = path_table(root, [("", "tl")])
    return Built(table, names=(f"{table} row 10",))


def table_empty_label(root: Path) -> Built:
    table = path_table(root, [("tl/00.png", "")])
    return Built(table, names=(f"{table} row 10",))


def table_absolute_paths(root: Path) -> Built:
    image_folder(root)
    rows = [(str(p), p.parent.name) for p in sorted(root.rglob("*.png"))]
    return Built(write_table(root / "abs.csv", rows, header=("path", "label")))


def table_mixed_image_audio(root: Path) -> Built:
    put(root / "clip.wav", wav_file())
    table = path_table(root, [("clip.wav", "tl")])
    return Built(table, names=(str(table), "clip.wav"))


def table_paths_name_no_media(root: Path) -> Built:
    table = path_table(root, [], name="t.csv")
    text = table.read_text().replace(".png", ".txt")
    table.write_text(text)
    return Built(table, ("--path-column", "path"), names=(str(table),))


def table_missing_path_column(root: Path) -> Built:
    table = path_table(root, header=("file_name", "label"))
    return Built(table, ("--modality", "image"), names=(str(table), "file_name"))


def table_unknown_path_column(root: Path) -> Built:
    table = path_table(root)
    return Built(table, ("--path-column", "picture"), names=(str(table), "picture"))


def table_text_modality_with_path_column(root: Path) -> Built:
    table = path_table(root)
    return Built(table, ("--modality", "text", "--path-column", "path"), names=("path",))


def val_unseen_class(root: Path) -> Built:
    image_folder(root / "train")
    image_folder(root / "val", classes=("tl",))
    (root / "val" / "tl").rename(root / "val" / "new")
    image_folder(root / "val", classes=("br",))
    return Built(root / "train", ("--val", str(root / "val")), names=("new",))


def val_zero_byte_only(root: Path) -> Built:
    image_folder(root / "train")
    put(root / "val" / "tl" / "0.png", b"")
    put(root / "val" / "br" / "0.png", b"")
    return Built(root / "train", ("--val", str(root / "val")), names=(str(root / "val"),))


# -- tasks that have landed: multilabel (a file in several class folders) and regression (a table) --


def multilabel_folder(root: Path) -> Built:
    image_folder(root)
    for f in sorted((root / "tl").glob("*.png"))[:2]:
        os.symlink(f, root / "br" / f"also-{f.name}")
    return Built(root)


def multilabel_corrupt_file(root: Path) -> Built:
    multilabel_folder(root)
    return Built(root, names=(str(put(root / "tl" / "bad.png", b"\x89PNG broken")),))


def multilabel_pipe_in_folder_name(root: Path) -> Built:
    image_folder(root)
    image_folder(root / "tmp", classes=("br",))
    (root / "tmp" / "br").rename(root / "a|b")
    (root / "tmp").rmdir()
    os.symlink(root / "tl" / "00.png", root / "a|b" / "dup.png")
    return Built(root, names=("a|b",))


def regression_table(root: Path, bad: tuple[str, str] | None = None) -> Path:
    image_folder(root)
    rows = [(str(p.relative_to(root)), f"{i * 0.5:.1f}") for i, p in enumerate(sorted(root.rglob("*.png")))]
    return write_table(root / "scores.csv", rows + ([bad] if bad else []), header=("path", "target"))


def regression_ok(root: Path) -> Built:
    return Built(regression_table(root))


def regression_value(value: str) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        table = regression_table(root, ("tl/00.png", value))
        return Built(table, names=(f"{table} row 10", value) if value.strip() else (f"{table} row 10",))

    return build


def regression_missing_file(root: Path) -> Built:
    table = regression_table(root, ("tl/gone.png", "1.5"))
    return Built(table, names=(str(root / "tl" / "gone.png"),))



CASES: list[Case] = []
for kind, what, content, filename in UNREADABLE:
    CASES += skip_and_fail(kind, what, extra_file(filename, content))
for kind, what, content in READABLE:
    name = READABLE_NAMES.get(what, f"odd.{READABLE_EXT.get(what, 'png')}")
    CASES.append(Case(kind, what, "ok", extra_ok(name, content)))
CASES += [
    Case("empty", "data-folder", "error", empty_folder),
    Case("empty", "class-folders-without-files", "error", empty_class_folders),
    Case("single-class", "one-class-folder", "error", one_class),
    Case("empty", "one-class-folder-without-images", "error", one_class_folder_empty),
    Case("corrupt", "class-folder-all-corrupt", "error", class_folder_all_corrupt),
    Case("corrupt", "every-file-zero-byte", "error", every_file_corrupt),
    Case("layout", "flat-folder-no-classes", "error", flat_folder),
    Case("layout", "images-next-to-class-folders", "error", top_level_next_to_classes),
    Case("layout", "train-and-val-split-folders", "error", split_folders),
    Case("layout", "folder-named-like-an-image", "ok", folder_named_like_image),
    Case("layout", "hidden-files-macosx-readme", "ok", hidden_and_junk),
    Case("layout", "odd-file-names", "ok", odd_file_names),
    Case("wrong-encoding", "non-utf8-file-name", "ok", non_utf8_file_name),
    Case("wrong-encoding", "non-utf8-file-name-corrupt-skipped", "ok", non_utf8_corrupt_file_name),
    Case("mixed-modality", "image-and-audio-class-folders", "error", mixed_image_audio),
    Case("mixed-modality", "audio-file-in-image-class", "error", images_and_audio_in_one_class),
    Case("symlink", "loop-to-parent-and-link-to-folder", "ok", symlink_loop),
    Case("symlink", "link-to-itself-skipped", "ok", self_link),
    Case("symlink", "link-outside-the-data", "ok", linked_image),
    *skip_and_fail("symlink", "dangling-link", dangling_link),
    Case("path", "data-does-not-exist", "error", data_path_missing),
    Case("path", "single-image-file", "error", single_image_file),
    Case("option", "modality-text-on-image-folder", "error", modality("text")),
    Case("option", "modality-audio-on-image-folder", "error", modality("audio")),
    Case("option", "unknown-modality", "error", unknown_modality),
    Case("option", "column-option-on-a-folder", "error", column_option_on_folder),
    *skip_and_fail("table", "path-to-missing-file", table_missing_file),
    *skip_and_fail("table", "path-to-corrupt-file", table_corrupt_file),
    *skip_and_fail("table", "empty-path-cell", table_empty_path),
    *skip_and_fail("table", "empty-label-cell", table_empty_label),
    Case("table", "absolute-paths", "ok", table_absolute_paths),
    Case("mixed-modality", "table-of-image-and-audio-paths", "error", table_mixed_image_audio),
    Case("table", "path-column-names-no-media", "error", table_paths_name_no_media),
    Case("table", "no-path-column", "error", table_missing_path_column),
    Case("table", "unknown-path-column", "error", table_unknown_path_column),
    Case("table", "path-column-with-modality-text", "error", table_text_modality_with_path_column),
    Case("mislabelled", "validation-class-unseen-in-training", "error", val_unseen_class),
    Case("zero-byte", "validation-folder-all-zero-byte", "error", val_zero_byte_only),
    Case("task", "file-in-two-class-folders", "ok", multilabel_folder, "multilabel"),
    *skip_and_fail("task", "corrupt-file", multilabel_corrupt_file, "multilabel"),
    Case("task", "pipe-in-class-folder-name", "error", multilabel_pipe_in_folder_name, "multilabel"),
    Case("task", "numeric-targets", "ok", regression_ok, "regression"),
    Case("task", "non-numeric-target", "error", regression_value("abc"), "regression"),
    Case("task", "nan-target", "error", regression_value("nan"), "regression"),
    Case("task", "infinite-target", "error", regression_value("inf"), "regression"),
    *skip_and_fail("task", "empty-target", regression_value(" "), "regression"),
    *skip_and_fail("task", "target-for-missing-file", regression_missing_file, "regression"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_image_input(case: Case, tmp_path: Path, backbone_args: dict[str, tuple[str, ...]]) -> None:
    run_case(case, tmp_path, backbone_args["image"])
