"""The readers on the real datasets in ../shared/data (skipped when this checkout has none)."""

from collections import Counter
from pathlib import Path

import numpy as np

from transferkit.data import load_audio, load_image, read_dataset, read_inputs


def test_hymenoptera_train_folder(shared_data: Path) -> None:
    samples = read_dataset(shared_data / "images" / "hymenoptera" / "train")
    assert samples.modality == "image" and samples.classes == ["ants", "bees"]
    assert samples.skipped == []
    # the PyTorch tutorial's 244 JPEGs, plus ants/imageNotFound.gif, which torchvision skips as a
    # non-image extension but which is a readable GIF (a placeholder picture)
    assert sum(p.suffix in (".jpg", ".jpeg") for p in samples.items) == 244
    assert len(samples) == 245
    assert Counter(samples.labels) == {"ants": 124, "bees": 121}
    assert load_image(samples.items[0]).mode == "RGB"


def test_sst2_dev_tsv(shared_data: Path) -> None:
    samples = read_dataset(shared_data / "text" / "sst2" / "dev.tsv")
    assert samples.modality == "text" and len(samples) == 872
    assert samples.classes == ["0", "1"]
    assert samples.items[0] == "one long string of cliches ."


def test_fsdd_is_a_flat_folder_read_as_inputs(shared_data: Path) -> None:
    recordings = shared_data / "speech" / "fsdd" / "recordings"
    files = sorted(recordings.glob("0_jackson_*.wav"))[:3]
    samples = read_inputs([str(f) for f in files], "audio")
    assert len(samples) == 3
    wave = load_audio(samples.items[0])
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 8000  # 8 kHz upsampled to 16 kHz
