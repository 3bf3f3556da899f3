"""The report's page engine: one section model rendered as HTML and as Markdown (hand-written
expectations), escaping, self-containment, figure files; and the reasoning highlighter."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from textwrap import dedent

import pytest

from emorl.eval.report.page import (
    Answer,
    Callout,
    Cards,
    Definitions,
    Document,
    Example,
    Figure,
    FigureGrid,
    Footer,
    Paragraph,
    Section,
    Styled,
    Table,
    b,
    code,
    html_block,
    i,
    mark,
    md_text,
    render_html,
    render_markdown,
    span,
    write_page,
)

PNG = b"\x89PNG\r\n\x1a\n-not-decoded-by-the-engine-"
JPG = b"\xff\xd8\xff-jpeg-bytes"


def _doc() -> Document:
    return Document(
        "T",
        "sub",
        [
            Section(
                "",
                [
                    Callout("Summary", [["Best: ", b("grpo"), " at 0.5."], "plain item"]),
                    Cards([("best UAR", "0.500", "grpo")]),
                    Paragraph("a note", cls="note"),
                ],
            ),
            Section(
                "Metrics",
                [
                    Table(
                        ["model", "WAR"],
                        [["grpo", ("0.500", "[0.40, 0.60]")], [[i("ideal")], (b("0.9"), "")]],
                        kind="m",
                    ),
                    Section("Sub", [Paragraph(["run ", code("emorl x"), "."])], level=3),
                ],
                anchor="metrics",
            ),
            Section(
                "Figures",
                [
                    Figure(PNG, "bars", "modality"),
                    FigureGrid(
                        [Figure(PNG, "c1", "confusion", caption="one"), Figure(PNG, "c2", "confusion", caption="two")]
                    ),
                ],
                anchor="figs",
            ),
            Section(
                "Examples",
                [
                    Paragraph(span("legend", mark("v", "", "face")), md="Marks are in the HTML version."),
                    Example(
                        "clip1",
                        [("true", b("happy")), ("informative", "video")],
                        [Answer("base", "no answer", False), Answer("grpo", "happy", True)],
                        Figure(JPG, "frames of clip1", "frames", mime="image/jpeg", cls="strip"),
                        ["The ", mark("v", "video face", "mouth curves up"), "."],
                        "answer: happy",
                    ),
                ],
            ),
            Section("Definitions", [Definitions([("WAR", "accuracy")]), Footer("Run dirs: a, b.")], anchor="defs"),
        ],
        generated="2026-01-02 03:04",
    )


def test_one_section_model_two_back_ends():
    doc = _doc()
    h = render_html(doc)
    md, files = render_markdown(doc, "r_files")
    # HTML: every block, in order, with its classes and data-kind
    b64 = base64.b64encode(PNG).decode()
    for frag in (
        '<header><h1>T</h1><p class="sub">sub · generated 2026-01-02 03:04</p></header>',
        (
            '<section class="summary"><h3>Summary</h3><ul><li>Best: <b>grpo</b> at 0.5.</li><li>plain item</li>'
            "</ul></section>"
        ),
        '<div class="card"><div class="k">best UAR</div><div class="v">0.500</div><div class="s">grpo</div>',
        '<p class="note">a note</p>',
        '<h2 id="metrics">Metrics</h2>',
        (
            '<table data-kind="m"><thead><tr><th>model</th><th>WAR</th></tr></thead><tbody>'
            '<tr><td class="name">grpo</td><td>0.500 <span class="ci">[0.40, 0.60]</span></td></tr>'
            '<tr><td class="name"><i>ideal</i></td><td><b>0.9</b></td></tr></tbody></table>'
        ),
        "<h3>Sub</h3>\n<p>run <code>emorl x</code>.</p>",
        f'<img data-kind="modality" alt="bars" src="data:image/png;base64,{b64}">',
        '<div class="grid"><figure><img data-kind="confusion" alt="c1" src="data:image/png;base64,',
        "<figcaption>two</figcaption></figure></div>",
        '<p><span class="legend"><mark class="v">face</mark></span></p>',
        (
            '<div class="example"><div class="head"><b>clip1</b><span class="tag">true: <b>happy</b></span>'
            '<span class="tag">informative: video</span><span class="tag no">base: no answer</span>'
            '<span class="tag ok">grpo: happy</span></div>'
        ),
        '<img class="strip" data-kind="frames" alt="frames of clip1" src="data:image/jpeg;base64,',
        (
            '<div class="reason">The <mark class="v" title="video face">mouth curves up</mark>.</div>'
            '<div class="note">answer: happy</div></div>'
        ),
        '<dl class="defs"><dt>WAR</dt><dd>accuracy</dd></dl>',
        "<footer>Run dirs: a, b.</footer>",
    ):
        assert frag in h, frag
    assert h.index("Metrics") < h.index("Figures") < h.index("clip1") < h.index("Definitions")
    # Markdown: the same model, hand-written expectation (cards are HTML only)
    assert md == dedent("""\
        # T

        sub

        **Summary**

        - Best: **grpo** at 0.5.
        - plain item

        a note

        ## Metrics

        | model | WAR |
        |---|---|
        | grpo | 0.500 [0.40, 0.60] |
        | ideal | **0.9** |

        ### Sub

        run `emorl x`.

        ## Figures

        ![bars](r_files/01-modality.png)

        ![c1](r_files/02-confusion.png)

        ![c2](r_files/03-confusion.png)

        ## Examples

        Marks are in the HTML version.

        **clip1** — true happy, informative video; base: no answer, grpo: happy

        ![frames of clip1](r_files/04-frames.jpg)

        > The mouth curves up.
        >
        > answer: happy

        ## Definitions

        - **WAR**: accuracy

        _Run dirs: a, b._

        """)
    assert [n for n, _ in files] == ["01-modality.png", "02-confusion.png", "03-confusion.png", "04-frames.jpg"]
    assert files[3][1] == JPG


def test_escaping():
    evil = "<script>alert('x')</script> & \"q\""
    doc = Document(
        evil,
        evil,
        [
            Section(
                evil,
                [
                    Paragraph([evil, b(evil)]),
                    Table([evil], [[evil], [("a|b", "[<1>]")]]),
                    Figure(PNG, evil, "k<&>"),
                    Paragraph(mark("v", evil, "m")),
                ],
            )
        ],
    )
    h = render_html(doc)
    assert "<script" not in h and "alert('x')" in h  # text: <, >, & escaped; quotes need no escaping there
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"q\"" in h
    assert 'alt="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;"' in h  # attributes: quotes too
    assert 'data-kind="k&lt;&amp;&gt;"' in h and 'title="&lt;script&gt;' in h
    assert '<span class="ci">[&lt;1&gt;]</span>' in h
    md, _ = render_markdown(doc, "f")
    assert "| a\\|b [<1>] |" in md  # a pipe in a cell would split the Markdown row
    assert f"# {evil}" in md  # Markdown keeps the text as written


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, v) for k, v in attrs if k in ("src", "href", "srcset", "poster", "data")]


def test_self_contained(tmp_path):
    out = write_page(_doc(), tmp_path / "r.html")
    h = out.read_text()
    p = _Refs()
    p.feed(h)
    assert p.refs and all(v.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for _, v in p.refs)
    assert "http://" not in h and "https://" not in h and "url(" not in h and "@import" not in h
    assert "<link" not in h and "<script" not in h
    md = out.with_suffix(".md").read_text()
    links = [x.split("](", 1)[1].split(")", 1)[0] for x in md.split("![")[1:]]
    assert len(links) == 4 and all((tmp_path / x).is_file() for x in links)
    assert (tmp_path / "r_files" / "04-frames.jpg").read_bytes() == JPG


def test_rerender_replaces_old_figures(tmp_path):
    write_page(_doc(), tmp_path / "r.html")
    keep = tmp_path / "r_files" / "notes.txt"
    keep.write_text("mine")
    write_page(Document("T", "s", [Section("x", [Figure(PNG, "only", "solo")])]), tmp_path / "r.html")
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == ["01-solo.png", "notes.txt"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="text style 'u'"):
        Styled("u", ("x",))
    with pytest.raises(ValueError, match="mime must be"):
        Figure(PNG, "a", "k", mime="image/gif")
    with pytest.raises(TypeError, match="not a page block: dict"):
        html_block({"p": 1})
    with pytest.raises(TypeError, match="not a page block: int"):
        render_markdown(Document("t", "s", [Section("x", [3])]), "f")


# a synthetic clip's meta (from the world generator): a smile and a shrill voice are true, flat intonation is not
META = {
    "informative": "both",
    "cues": {
        "video": {
            "brow_raise": -0.0118,
            "brow_tilt": 0.7432,
            "eye_open": 0.6518,
            "mouth_curve": 0.4536,
            "mouth_open": 0.3544,
            "mouth_width": 0.5879,
            "nose_wrinkle": 0.1086,
            "head_amp": 0.7246,
            "head_move": "tremble",
            "occluded": False,
            "blink": False,
        },
        "audio": {
            "pitch": 5.7876,
            "pitch_range": 2.1723,
            "energy": -9.5153,
            "rate": 2.8462,
            "breathiness": 0.651,
            "jitter": 0.4083,
            "harshness": 0.1234,
            "pitch_contour": "rise-fall",
        },
    },
}


def test_highlight_marks_cues_and_keeps_the_text():
    from emorl.eval.report.examples import highlight
    from emorl.eval.report.page import _plain

    text = "She is smiling with a shrill voice and flat intonation; her face shows it."
    rich = highlight(text, META)
    assert _plain(rich) == md_text(rich) == text  # marking never changes the words
    marks = {x.content[0]: (x.cls, x.title) for x in rich if isinstance(x, Styled)}
    assert marks == {
        "smiling": ("v", "video cue"),
        "a shrill voice": ("a", "audio cue"),
        "flat intonation": ("x", "audio: not true for this clip"),
        "face": ("g", "video generic"),
    }
    # without the synthetic truth nothing is struck through
    assert {x.cls for x in highlight(text, None) if isinstance(x, Styled)} == {"v", "a", "g"}
    assert '<mark class="x" title="audio: not true for this clip">flat intonation</mark>' in html_block(Paragraph(rich))
