"""The HTML part of an alert email, shared by every email adapter: the text, its links made
clickable (acknowledge/resolve links among them), and the incident's and dashboard's links."""

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


def html_body(text: str, url: str | None, dashboard_url: str | None = None) -> str:
    """The inner HTML of the message: lines kept, URLs as links."""
    lines = "<br>".join(_line(line) for line in text.splitlines())
    links = [
        f'<a href="{html.escape(href)}">{label}</a>'
        for href, label in ((url, "Open the incident"), (dashboard_url, "Open the dashboard"))
        if href
    ]
    return f"<p>{lines}</p>" + (f"<p>{' | '.join(links)}</p>" if links else "")
