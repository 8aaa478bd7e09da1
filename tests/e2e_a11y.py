"""The accessibility checker of the browser tests: axe-core (pinned in extensions/package.json,
installed by ./install.sh --dev) run inside a Playwright page against WCAG 2.1 A/AA and the
best-practice rules for landmarks, headings and skip links. Nothing is fetched: the script is
read from node_modules and evaluated in the page (no <script> tag, so no page's CSP blocks it)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page

AXE = Path(__file__).resolve().parents[1] / "extensions/node_modules/axe-core/axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BEST_PRACTICE = [
    "landmark-one-main",
    "region",
    "bypass",
    "skip-link",
    "page-has-heading-one",
    "heading-order",
]


@cache
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: run ./install.sh --dev")
    return AXE.read_text()


@dataclass
class Violation:
    page: str
    rule: str
    impact: str
    help: str
    nodes: list[tuple[str, str]]  # (selector, html excerpt)

    def __str__(self) -> str:
        lines = [f"{self.page}: {self.rule} ({self.impact}): {self.help}"]
        lines += [f"    {selector}  {html}" for selector, html in self.nodes]
        return "\n".join(lines)


def check(page: Page, name: str, scope: str | None = None) -> list[Violation]:
    """axe's violations on the page as it is now (or inside the element `scope` selects).

    The sandboxed report iframe runs no script, so axe cannot enter it: frames are left out,
    and the report's own page is checked where it is opened as a page."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    options = {
        "runOnly": {"type": "tag", "values": TAGS},
        "iframes": False,
        "resultTypes": ["violations"],
    }
    # axe takes either tags or rules in runOnly: the best-practice rules are switched on by name
    options["rules"] = {rule: {"enabled": True} for rule in BEST_PRACTICE}
    results = page.evaluate(
        """async ([scope, options]) => {
            const context = scope ? document.querySelector(scope) : document;
            if (!context) throw new Error(`no element ${scope} to check`);
            const late = new Promise((_, no) => setTimeout(() => no(new Error('axe: 60 s')), 6e4));
            const r = await Promise.race([axe.run(context, options), late]);
            return r.violations.map(v => ({
                rule: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => [n.target.join(' '), n.html.slice(0, 160)]),
            }));
        }""",
        [scope, options],
    )
    return [Violation(page=name, **v) for v in results]


@dataclass
class Findings:
    """Violations gathered over several pages, judged once at the end of a test."""

    found: list[Violation] = field(default_factory=list)

    def check(self, page: Page, name: str, scope: str | None = None) -> None:
        self.found += check(page, name, scope)

    def assert_clean(self) -> None:
        assert not self.found, "accessibility violations (axe-core):\n" + "\n".join(
            map(str, self.found)
        )


def contrast(element: Locator) -> float:
    """The WCAG contrast ratio of an element's text on its own (opaque) background, as the
    browser computed them; a translucent text colour is laid over that background first."""
    # a panel that re-renders (its data refreshed after a theme change) can swap the node
    # between locating and reading it: a detached node's computed colours are empty, so
    # read again, up to a few seconds, until both are colours
    for _ in range(50):
        text, ground = element.evaluate(
            "e => { const s = getComputedStyle(e); return [s.color, s.backgroundColor]; }"
        )
        back = [float(v) for v in re.findall(r"[\d.]+", ground)[:3]]
        fore = [float(v) for v in re.findall(r"[\d.]+", text)]
        if len(back) == 3 and len(fore) >= 3:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no colours computed for {element}: {text!r} on {ground!r}")
    alpha = fore[3] if len(fore) > 3 else 1.0
    laid = [alpha * f + (1 - alpha) * b for f, b in zip(fore[:3], back, strict=True)]
    light, dark = sorted((luminance(laid), luminance(back)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def luminance(rgb: list[float]) -> float:
    linear = [
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
