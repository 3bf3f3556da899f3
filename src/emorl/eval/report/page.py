"""The page engine: one section model, two back ends.

A report is a :class:`Document` of :class:`Section` objects. A section is plain data: a title and
a list of blocks (paragraphs, tables, figures, a summary box, key-number cards, worked examples,
definitions, a footer, or a nested section). Text inside blocks is *rich text*: a ``str`` or a
sequence of strings and :class:`Styled` spans (bold, italic, code, a classed span, a marked
phrase). Nothing in the model is HTML or Markdown; the back ends decide:

- :func:`render_html`: one self-contained page (inline CSS, figures as base64 ``data:`` URIs,
  nothing fetched). Every string is escaped (text with ``html.escape(quote=False)``, attribute
  values with quotes escaped too).
- :func:`render_markdown`: the Markdown twin plus its figure files (``NN-kind.png|jpg``,
  numbered in document order, linked relative to the Markdown file). Bold becomes ``**..**``,
  code ``\\`..\\```; other styling is dropped; ``|`` in table cells is escaped.

:func:`write_page` writes both (atomically) and the figure files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emorl.utils import atomic_write_bytes, atomic_write_text

# ----------------------------------------------------------------------------- rich text


@dataclass(frozen=True)
class Styled:
    """A styled run of rich text: ``tag`` is one of b, i, code, span (with ``cls``) or mark (with
    ``cls`` and a hover ``title``)."""

    tag: str
    content: tuple = ()
    cls: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        if self.tag not in ("b", "i", "code", "span", "mark"):
            raise ValueError(f"unknown text style {self.tag!r} (expected b, i, code, span or mark)")


Text = str | Styled | Sequence["str | Styled"]


def b(*content: Text) -> Styled:
    return Styled("b", content)


def i(*content: Text) -> Styled:
    return Styled("i", content)


def code(*content: Text) -> Styled:
    return Styled("code", content)


def span(cls: str, *content: Text) -> Styled:
    return Styled("span", content, cls=cls)


def mark(cls: str, title: str, *content: Text) -> Styled:
    return Styled("mark", content, cls=cls, title=title)


# ----------------------------------------------------------------------------- blocks


@dataclass
class Paragraph:
    """A paragraph; ``md`` replaces the text in Markdown when the HTML text cannot be shown there
    (e.g. a colour legend)."""

    text: Text
    cls: str = ""
    md: Text | None = None


Cell = Text | tuple[Text, str]  # text, or (value, interval): the interval is shown small and muted


@dataclass
class Table:
    head: list[str]
    rows: list[list[Cell]]
    kind: str = ""  # data-kind attribute: lets tests and readers find a table
    cls: str = ""
    first_col_class: str = "name"  # class of a first-column text cell (the row's name)


@dataclass
class Figure:
    """An image (PNG or JPEG bytes). With a caption it is a ``<figure>``; else a bare image."""

    data: bytes
    alt: str
    kind: str
    mime: str = "image/png"
    cls: str = ""
    caption: Text | None = None

    def __post_init__(self) -> None:
        if self.mime not in ("image/png", "image/jpeg"):
            raise ValueError(f"figure {self.kind!r}: mime must be image/png or image/jpeg, got {self.mime!r}")

    @property
    def ext(self) -> str:
        return "png" if self.mime == "image/png" else "jpg"


@dataclass
class FigureGrid:
    figures: list[Figure]


@dataclass
class Callout:
    """A boxed titled bullet list (the summary)."""

    title: str
    items: list[Text]
    cls: str = "summary"


@dataclass
class Cards:
    """Key numbers as cards: (key, value, subtitle). HTML only: the Markdown twin has them in the summary."""

    cards: list[tuple[str, str, str]]


@dataclass
class Answer:
    name: str
    text: str
    correct: bool


@dataclass
class Example:
    """One worked item: facts about it (label, value), each model's graded answer, an optional
    figure, a body (the reasoning) and a note below it."""

    title: str
    facts: list[tuple[str, Text]]
    answers: list[Answer]
    figure: Figure | None
    body: Text
    note: Text


@dataclass
class Definitions:
    items: list[tuple[str, str]]


@dataclass
class Footer:
    text: Text


@dataclass
class Section:
    """A titled part of the page (no heading when ``title`` is empty); sections nest as blocks."""

    title: str = ""
    blocks: list = field(default_factory=list)
    anchor: str = ""
    level: int = 2


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]
    generated: str = ""  # shown after the subtitle in HTML


# ----------------------------------------------------------------------------- HTML back end


def _esc(s: str) -> str:
    return html.escape(s, quote=False)


def _attr(name: str, value: str) -> str:
    return f' {name}="{html.escape(value)}"' if value else ""


def _parts(text: Text) -> Sequence:
    return (text,) if isinstance(text, (str, Styled)) else text


def html_text(text: Text) -> str:
    out = []
    for part in _parts(text):
        if isinstance(part, str):
            out.append(_esc(part))
        else:
            attrs = _attr("class", part.cls) + (_attr("title", part.title) if part.tag == "mark" else "")
            out.append(f"<{part.tag}{attrs}>{html_text(part.content)}</{part.tag}>")
    return "".join(out)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{_esc(x)}</th>" for x in t.head)
    out = [
        f'<div class="tw"><table{_attr("class", t.cls)}{_attr("data-kind", t.kind)}><thead><tr>{head}</tr></thead><tbody>'
    ]
    for row in t.rows:
        cells = []
        for j, cell in enumerate(row):
            if isinstance(cell, tuple):
                v, small = cell
                cells.append(
                    f'<td>{html_text(v)} <span class="ci">{_esc(small)}</span></td>'
                    if small
                    else f"<td>{html_text(v)}</td>"
                )
            else:
                cells.append(f"<td{_attr('class', t.first_col_class if j == 0 else '')}>{html_text(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_img(f: Figure) -> str:
    src = f"data:{f.mime};base64,{base64.b64encode(f.data).decode('ascii')}"
    return f'<img{_attr("class", f.cls)}{_attr("data-kind", f.kind)}{_attr("alt", f.alt)} src="{src}">'


def _html_figure(f: Figure) -> str:
    if f.caption is None:
        return _html_img(f)
    return f"<figure>{_html_img(f)}<figcaption>{html_text(f.caption)}</figcaption></figure>"


def _html_example(e: Example) -> str:
    tags = [f'<span class="tag">{_esc(k)}: {html_text(v)}</span>' for k, v in e.facts]
    tags += [
        f'<span class="tag {"ok" if a.correct else "no"}">{_esc(a.name)}: {_esc(a.text)}</span>' for a in e.answers
    ]
    parts = [f'<div class="example"><div class="head"><b>{_esc(e.title)}</b>{"".join(tags)}</div>']
    if e.figure is not None:
        parts.append(_html_figure(e.figure))
    parts.append(f'<div class="reason">{html_text(e.body)}</div><div class="note">{html_text(e.note)}</div></div>')
    return "\n".join(parts)


def html_block(block) -> str:
    """One block (or a nested section) as HTML."""
    if isinstance(block, Section):
        return "\n".join(_html_section(block))
    if isinstance(block, Paragraph):
        return f"<p{_attr('class', block.cls)}>{html_text(block.text)}</p>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        return _html_figure(block)
    if isinstance(block, FigureGrid):
        return '<div class="grid">' + "\n".join(_html_figure(f) for f in block.figures) + "</div>"
    if isinstance(block, Callout):
        items = "".join(f"<li>{html_text(x)}</li>" for x in block.items)
        return f"<section{_attr('class', block.cls)}><h3>{_esc(block.title)}</h3><ul>{items}</ul></section>"
    if isinstance(block, Cards):
        return (
            '<div class="cards">'
            + "".join(
                f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div>'
                f'<div class="s">{_esc(s)}</div></div>'
                for k, v, s in block.cards
            )
            + "</div>"
        )
    if isinstance(block, Example):
        return _html_example(block)
    if isinstance(block, Definitions):
        return '<dl class="defs">' + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in block.items) + "</dl>"
    if isinstance(block, Footer):
        return f"<footer>{html_text(block.text)}</footer>"
    raise TypeError(f"not a page block: {type(block).__name__}")


def _html_section(s: Section) -> list[str]:
    out = [f"<h{s.level}{_attr('id', s.anchor)}>{_esc(s.title)}</h{s.level}>"] if s.title else []
    return out + [html_block(x) for x in s.blocks]


def render_html(doc: Document, css: str | None = None) -> str:
    """The whole page: one string, nothing external (inline CSS, figures as data URIs)."""
    sub = doc.subtitle + (f" · generated {doc.generated}" if doc.generated else "")
    body = [f'<header><h1>{_esc(doc.title)}</h1><p class="sub">{_esc(sub)}</p></header>']
    for s in doc.sections:
        body += _html_section(s)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><title>{_esc(doc.title)}</title>'
        f"<style>{CSS if css is None else css}</style></head><body><main>" + "\n".join(body) + "</main></body></html>\n"
    )


# ----------------------------------------------------------------------------- Markdown back end


def md_text(text: Text) -> str:
    out = []
    for part in _parts(text):
        if isinstance(part, str):
            out.append(part)
        elif part.tag == "b":
            out.append(f"**{md_text(part.content)}**")
        elif part.tag == "code":
            out.append(f"`{md_text(part.content)}`")
        else:
            out.append(md_text(part.content))
    return "".join(out)


def _plain(text: Text) -> str:
    """Rich text without any styling."""
    return "".join(p if isinstance(p, str) else _plain(p.content) for p in _parts(text))


def _md_table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(t.head) + " |", "|" + "---|" * len(t.head)]
    for row in t.rows:
        cells = [f"{md_text(c[0])} {c[1]}".strip() if isinstance(c, tuple) else md_text(c) for c in row]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return lines


class _Markdown:
    """Collects Markdown lines and the figure files they link to (numbered in document order)."""

    def __init__(self, asset_prefix: str):
        self.lines: list[str] = []
        self.assets: list[tuple[str, bytes]] = []
        self.prefix = asset_prefix

    def add(self, *chunks: str) -> None:
        for c in chunks:
            self.lines += [c, ""]

    def figure(self, f: Figure) -> None:
        name = f"{len(self.assets) + 1:02d}-{f.kind}.{f.ext}"
        self.assets.append((name, f.data))
        self.add(f"![{f.alt}]({self.prefix}/{name})")

    def example(self, e: Example) -> None:
        facts = ", ".join(f"{k} {_plain(v)}" for k, v in e.facts)
        answers = ", ".join(f"{a.name}: {a.text}" for a in e.answers)
        self.add(f"**{e.title}** — {facts}" + (f"; {answers}" if e.answers else ""))
        if e.figure is not None:
            self.figure(e.figure)
        self.add(f"> {md_text(e.body)}\n>\n> {md_text(e.note)}")

    def block(self, x) -> None:
        if isinstance(x, Section):
            self.section(x)
        elif isinstance(x, Paragraph):
            self.add(md_text(x.text if x.md is None else x.md))
        elif isinstance(x, Table):
            self.add("\n".join(_md_table(x)))
        elif isinstance(x, Figure):
            self.figure(x)
        elif isinstance(x, FigureGrid):
            for f in x.figures:
                self.figure(f)
        elif isinstance(x, Callout):
            self.add(f"**{x.title}**\n\n" + "\n".join(f"- {md_text(t)}" for t in x.items))
        elif isinstance(x, Example):
            self.example(x)
        elif isinstance(x, Definitions):
            self.add("\n".join(f"- **{k}**: {v}" for k, v in x.items))
        elif isinstance(x, Footer):
            self.add(f"_{md_text(x.text)}_")
        elif not isinstance(x, Cards):
            raise TypeError(f"not a page block: {type(x).__name__}")

    def section(self, s: Section) -> None:
        if s.title:
            self.add("#" * s.level + " " + s.title)
        for x in s.blocks:
            self.block(x)


def render_markdown(doc: Document, asset_prefix: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The Markdown twin and its figure files: (text, [(file name, bytes)]); figures are linked as
    ``asset_prefix/NN-kind.ext``."""
    md = _Markdown(asset_prefix)
    md.add(f"# {doc.title}\n\n{doc.subtitle}")
    for s in doc.sections:
        md.section(s)
    return "\n".join(md.lines) + "\n", md.assets


def write_page(doc: Document, out_html: Path) -> Path:
    """Write ``out_html`` (self-contained), ``out_html.with_suffix('.md')`` and the Markdown's
    figures in ``<stem>_files/`` (figures of an earlier rendering there are removed first)."""
    out_html = Path(out_html)
    assets = out_html.with_name(out_html.stem + "_files")
    if assets.is_dir():
        for old in [*assets.glob("[0-9][0-9]-*.png"), *assets.glob("[0-9][0-9]-*.jpg")]:
            old.unlink()
    md, files = render_markdown(doc, assets.name)
    for name, data in files:
        atomic_write_bytes(assets / name, data)
    atomic_write_text(out_html, render_html(doc))
    atomic_write_text(out_html.with_suffix(".md"), md)
    return out_html


CSS = """
:root{--fg:#1d1d1f;--muted:#6e6e73;--line:#e5e5ea;--bg:#fbfbfd;--card:#fff;--accent:#3b5bdb;--v:#4C78A8;--a:#F58518;--bad:#d62728;--good:#2f9e44}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"DejaVu Sans","Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:32px 28px 64px}
header h1{font-size:30px;margin:0 0 4px;letter-spacing:-.02em}
header .sub{color:var(--muted);margin:0 0 20px}
h2{font-size:21px;margin:44px 0 10px;padding-top:8px;border-top:1px solid var(--line);letter-spacing:-.01em}
h3{font-size:16px;margin:24px 0 8px}
p{margin:8px 0 12px;max-width:78ch}
.summary{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px 22px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.summary h3{margin-top:0}
.summary ul{margin:6px 0 0;padding-left:20px}.summary li{margin:6px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:18px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.card .v{font-size:26px;font-weight:650;letter-spacing:-.02em}.card .s{color:var(--muted);font-size:12px}
table{border-collapse:collapse;margin:10px 0 18px;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;font-size:13.5px}
th{background:#f2f2f7;text-align:left;font-weight:600;padding:7px 12px;border-bottom:1px solid var(--line)}
td{padding:6px 12px;border-bottom:1px solid var(--line);white-space:nowrap}
tr:last-child td{border-bottom:0}td.name{font-weight:600}
.ci{color:var(--muted);font-size:11.5px}
table.stack .ci{display:block;line-height:1.2}
.sig{color:var(--good);font-weight:600}.ns{color:var(--muted)}
img{max-width:100%;height:auto}
.tw{overflow-x:auto;max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px;align-items:start}
.grid figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:8px}
figcaption{font-size:12px;color:var(--muted);text-align:center}
.example{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 16px;margin:12px 0}
.example .head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap;margin-bottom:8px}
.tag{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;background:#f2f2f7}
.tag.ok{background:#e6f4ea;color:#1e6b34}.tag.no{background:#fde8e8;color:#a61b1b}
.example img.strip{border-radius:6px;display:block;margin:4px 0 8px}
.reason{font-size:14px;background:#fafafa;border-left:3px solid var(--line);padding:6px 10px;margin:6px 0;white-space:normal}
mark{background:none;padding:0 1px;border-radius:3px}
mark.v{background:rgba(76,120,168,.16);color:#1f4e79}mark.a{background:rgba(245,133,24,.18);color:#8a4500}
mark.x{background:rgba(214,39,40,.14);color:var(--bad);text-decoration:line-through}
mark.g{background:none;border-bottom:1px dotted #999}
.legend{font-size:12px;color:var(--muted)}
.note{color:var(--muted);font-size:13px}
dl.defs dt{font-weight:600;margin-top:8px}dl.defs dd{margin:2px 0 0 0;color:#333;max-width:90ch}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"""
