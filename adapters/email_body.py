"""The HTML part of an alert email, shared by every email adapter: the text, its links made
clickable (acknowledge/resolve links among them), and the incident's own link."""

from __future__ import annotations

import html
import re

_URL = re.compile(r"https?://[^\s<>\"']+")


def _line(text: str) -> str:
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        url = html.escape(match.group())
        out.append(f'<a href="{url}">{url}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def html_body(text: str, url: str | None) -> str:
    """The inner HTML of the message: lines kept, URLs as links."""
    lines = "<br>".join(_line(line) for line in text.splitlines())
    link = f'<p><a href="{html.escape(url)}">Open the incident</a></p>' if url else ""
    return f"<p>{lines}</p>{link}"
