"""Reading the multi-domain sentiment format (Blitzer et al. 2007): one pseudo-XML file per class.

A domain folder holds ``positive.review`` and ``negative.review`` (and sometimes
``unlabeled.review``); each review's text is inside ``<review_text>...</review_text>``. The file
name is the class. The files are latin-1 and HTML-escaped.
"""

import html
import re
from pathlib import Path

from transferkit.data.samples import Samples, require_classes
from transferkit.errors import DataError

REVIEW_SUFFIX = ".review"
_REVIEW_TEXT = re.compile(r"<review_text>(.*?)</review_text>", flags=re.S)


def is_review_folder(folder: Path) -> bool:
    """Whether ``folder`` directly holds ``.review`` files."""
    return folder.is_dir() and any(p.suffix == REVIEW_SUFFIX for p in folder.iterdir())


def read_review_folder(folder: str | Path, *, require_labels: bool = True) -> Samples:
    """Texts and labels of one domain folder of ``.review`` files.

    Args:
        folder: e.g. ``amazon_reviews/books`` holding ``positive.review`` and ``negative.review``.
        require_labels: demand at least two labelled classes; ``unlabeled.review`` is only read
            when this is false, and then every review comes back without a label.

    Raises:
        DataError: no ``.review`` files, a file without ``<review_text>`` elements, or (with
            ``require_labels``) fewer than two classes.

    Example:
        >>> samples = read_review_folder("amazon_reviews/books")
        >>> samples.classes
        ['negative', 'positive']
    """
    folder = Path(folder).expanduser()
    files = sorted(p for p in folder.glob(f"*{REVIEW_SUFFIX}") if require_labels is False or p.stem != "unlabeled")
    if not files:
        raise DataError(f"no {REVIEW_SUFFIX} files in {folder}")
    texts: list[str] = []
    labels: list[str] = []
    origins: list[str] = []
    for path in files:
        bodies = _REVIEW_TEXT.findall(path.read_text(encoding="latin-1"))
        if not bodies:
            raise DataError(f"{path}: no <review_text> elements; is it a multi-domain sentiment .review file?")
        for n, body in enumerate(bodies, 1):
            texts.append(html.unescape(" ".join(body.split())))
            labels.append(path.stem)
            origins.append(f"{path} review {n}")
    if require_labels:
        require_classes(labels, str(folder))
    return Samples(items=texts, labels=labels if require_labels else None, modality="text", origins=origins)
