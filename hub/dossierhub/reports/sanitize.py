"""The HTML a report may contain: headings, text, lists, tables and embedded images, and
nothing that runs. nbconvert's own clean_html escapes headings and table heads (its allow-list
is bleach's e-mail subset), so a sanitised report showed raw tags; this one keeps what a report
needs. It is one of three layers: the sanitiser here, the report's Content-Security-Policy
(no script at all), and the pages' sandboxed frame."""

from __future__ import annotations

import re

import bleach

TAGS = frozenset(
    {
        *("h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "div", "span", "small"),
        *("em", "strong", "b", "i", "u", "s", "sub", "sup", "code", "pre", "kbd", "blockquote"),
        *("ul", "ol", "li", "dl", "dt", "dd", "a", "abbr", "img", "figure", "figcaption"),
        *("table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"),
    }
)
ATTRIBUTES = {
    # data-* names the report's own parts (tables, charts, withheld outputs) for readers' tools
    "*": ["class", "id", "title", "data-table", "data-chart", "data-output", "data-withheld"],
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "th": ["colspan", "rowspan", "align"],
    "td": ["colspan", "rowspan", "align"],
    "col": ["span"],
    "ol": ["start"],
}
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
# style and script blocks go with their content (bleach would keep it as text)
_BLOCKS = re.compile(r"<(style|script)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def clean_report_html(element: str | bytes) -> str:
    text = element.decode() if isinstance(element, bytes) else str(element)
    return bleach.clean(
        _BLOCKS.sub("", text),
        tags=TAGS,
        attributes=ATTRIBUTES,
        protocols=PROTOCOLS,
        strip=True,
        strip_comments=True,
    )
