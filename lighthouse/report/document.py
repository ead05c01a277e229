"""The report's document model (headings, paragraphs, tables, charts) and its two renderers: Markdown with
charts as relative files, and one self-contained HTML file (inline CSS, charts as base64 PNG). What goes into
the document is decided in report.py; how it looks, here.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Union


@dataclass
class Table:
    headers: List[str]
    rows: List[List[str]]
    title: str = ""


@dataclass
class Chart:
    png: Path
    caption: str


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str
    css: str = ""  # "headline": the boxed sentence at the top


Block = Union[Heading, Table, Chart, Para, str]


def to_markdown(title: str, blocks: Sequence[Block], out: Path) -> str:
    lines = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Table):
            if b.title:
                lines += [f"**{b.title}**", ""]
            cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines.append("| " + " | ".join(cell(h) for h in b.headers) + " |")
            lines.append("| " + " | ".join("---" for _ in b.headers) + " |")
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Chart):
            lines += [f"![{b.caption}]({b.png.relative_to(out).as_posix()})", ""]
        elif isinstance(b, Para):
            lines += [f"**{b.text}**" if b.css == "headline" else b.text, ""]
        else:
            lines += [str(b), ""]
    return "\n".join(lines)


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; background: #f4f6f8;
       color: #1d2329; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 28px 48px; background: #ffffff; }
h1 { font-size: 1.6em; border-bottom: 3px solid #2f6db5; padding-bottom: 6px; }
h2 { font-size: 1.3em; margin-top: 1.6em; color: #1f4e85; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1em; margin-top: 1.2em; }
p.headline { background: #e8f1fb; border-left: 5px solid #2f6db5; padding: 8px 12px; font-size: 1.05em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.85em; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #dde6f0; }
tr:nth-child(even) td { background: #f6f8fa; }
td.bad { color: #b42318; font-weight: 600; }
figure { margin: 8px 0 20px; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85em; color: #57606a; }
"""


def to_html(title: str, blocks: Sequence[Block]) -> str:
    """One file: inline CSS, charts as base64 PNG data URIs; no scripts, no links, nothing fetched."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Table):
            parts = ["<table>"] + ([f"<caption>{esc(b.title)}</caption>"] if b.title else [])
            parts.append("<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in b.headers) + "</tr>")
            for row in b.rows:
                tds = []
                for h, c in zip(b.headers, row):
                    bad = h == "status" and c not in ("ok", "-", "")
                    tds.append(("<td class='bad'>" if bad else "<td>") + f"{esc(str(c))}</td>")
                parts.append("<tr>" + "".join(tds) + "</tr>")
            body.append("\n".join(parts + ["</table>"]))
        elif isinstance(b, Chart):
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(b.caption)}">'
                f"<figcaption>{esc(b.caption)}</figcaption></figure>"
            )
        elif isinstance(b, Para):
            body.append((f"<p class='{b.css}'>" if b.css else "<p>") + f"{esc(b.text)}</p>")
        else:
            body.append(f"<p>{esc(str(b))}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )
