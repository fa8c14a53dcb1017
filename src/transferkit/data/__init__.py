"""Reading user data: image and audio folders, tables of texts or file paths, in-memory arrays.

Every reader returns ``Samples``; decoders turn its items into what backbones take; every problem
a user can cause raises ``transferkit.errors.DataError`` naming the file, row or column.
"""

from transferkit.data.arrays import samples_from_arrays
from transferkit.data.decode import (
    DEFAULT_SAMPLE_RATE,
    check_wav_complete,
    item_digest,
    load_audio,
    load_image,
    samples_fingerprint,
)
from transferkit.data.readers import read_dataset, read_inputs
from transferkit.data.reviews import read_review_folder
from transferkit.data.samples import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MODALITIES,
    MediaPathAsTextWarning,
    Modality,
    Samples,
    SkippedItemWarning,
    require_classes,
)
from transferkit.data.split import split_samples, stratified_split
from transferkit.data.tables import LABEL_COLUMNS, PATH_COLUMNS, TEXT_COLUMNS

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_SAMPLE_RATE",
    "IMAGE_EXTENSIONS",
    "LABEL_COLUMNS",
    "MODALITIES",
    "PATH_COLUMNS",
    "TEXT_COLUMNS",
    "MediaPathAsTextWarning",
    "Modality",
    "Samples",
    "SkippedItemWarning",
    "check_wav_complete",
    "item_digest",
    "load_audio",
    "load_image",
    "read_dataset",
    "read_inputs",
    "read_review_folder",
    "require_classes",
    "samples_fingerprint",
    "samples_from_arrays",
    "split_samples",
    "stratified_split",
]
