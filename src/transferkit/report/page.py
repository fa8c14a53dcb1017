"""One self-contained HTML page: sections of tables and figures, every figure embedded as a PNG data URI.

The page loads nothing from anywhere (no scripts, no fonts, no CDN): it renders offline, from a file, as
it is. Each figure is also written beside it as a PNG file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.report.plots import save_png
from transferkit.safety import write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
figure{display:inline-block;margin:.5em}figure img{max-width:100%}figcaption{font-size:.85em;color:#555}
.examples{display:flex;flex-wrap:wrap;gap:10px}.example{border:1px solid #ddd;padding:6px;width:240px;
font-size:.85em;overflow-wrap:anywhere}.example img{max-width:112px;display:block}.note{color:#555;font-size:.9em}
"""


@dataclass
class Section:
    """A titled part of the page: its HTML body (already escaped)."""

    title: str
    body: str


@dataclass
class Figures:
    """Draws figures into ``folder`` as PNG files and hands back the ``<figure>`` that embeds each."""

    folder: Path
    prefix: str = ""
    written: list[Path] = field(default_factory=list)

    def add(self, name: str, fig: Figure, caption: str = "") -> str:
        """Write ``fig`` as ``folder/PREFIXname.png``; the HTML of the embedded figure."""
        path = save_png(fig, self.folder / f"{self.prefix}{name}.png")
        self.written.append(path)
        return embedded_png(path, caption or name)

    def draw(self, name: str, plot: Callable[..., Figure], *args: Any, caption: str = "", **kwargs: Any) -> str:
        return self.add(name, plot(*args, **kwargs), caption)


def embedded_png(path: Path, caption: str) -> str:
    """The ``<figure>`` that embeds the PNG file ``path`` as a data URI, named by ``data-plot``."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    alt = html.escape(caption)
    return (f"<figure data-plot='{html.escape(Path(path).name)}'><img alt='{alt}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{alt}</figcaption></figure>")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table; floats are shown with 4 significant digits."""
    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else ("—" if value is None else str(value))
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def examples_html(examples: Sequence[dict[str, Any]], describe: Callable[[dict[str, Any]], str]) -> str:
    """The worst-predicted examples as cards: the embedded media and what ``describe`` says of each."""
    cards = []
    for example in examples:
        media = example.get("media", {})
        kind, data = media.get("kind"), media.get("data", "")
        if kind == "image":
            shown = f"<img alt='{html.escape(example['origin'])}' src='{data}'>"
        elif kind == "audio":
            shown = f"<audio controls preload='none' src='{data}'></audio>"
        else:
            shown = f"<blockquote>{html.escape(data)}</blockquote>"
        cards.append(f"<div class='example'>{shown}<div><code>{html.escape(example['origin'])}</code></div>"
                     f"{describe(example)}</div>")
    return f"<div class='examples'>{''.join(cards)}</div>"


def write_page(path: str | Path, title: str, sections: Sequence[Section], *, intro: str = "") -> Path:
    """Write the page: a title, an introduction (HTML) and the sections in order."""
    body = "".join(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in sections)
    text = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro}{body}</body></html>\n")
    return write_text(path, text)
