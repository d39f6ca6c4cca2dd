"""axe-core in a Playwright page: WCAG 2.1 A and AA rules, serious and critical findings as readable text.

    from tests.browser.axe import check_page
    check_page(page)                 # raises AssertionError listing every serious or critical violation
    violations = run_axe(page)       # every violation, for reports

axe-core comes from npm (`node_modules/axe-core/axe.min.js`, a devDependency in package.json) and is injected
into the page under test; it is never loaded from a CDN.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.map(t => Array.isArray(t) ? t.join(' >>> ') : t),
                              summary: n.failureSummary || ''})),
  }));
}"""


def axe_available() -> bool:
    return AXE.exists()


def run_axe(page) -> list[dict]:
    """Every WCAG 2.1 A/AA violation axe-core finds in the page as it is now."""
    if not AXE.exists():
        raise AssertionError(f"{AXE.relative_to(ROOT)} is missing: run `npm ci` (make setup)")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        try:
            # an inline <script>: needs a context with bypass_csp=True (the app's CSP allows 'self' only)
            page.add_script_tag(path=str(AXE))
        except Exception as exc:  # Playwright's Error; fall back below
            if "Content Security Policy" not in str(exc):
                raise
            # the DevTools protocol's evaluate is not subject to the page's CSP
            page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    return page.evaluate(_RUN, WCAG_TAGS)


def blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in BLOCKING]


def describe(violations: list[dict], *, where: str = "") -> str:
    """One paragraph per violation: rule id, impact, what it means, the elements (CSS selectors), help URL."""
    lines = [f"{len(violations)} accessibility violation(s){' on ' + where if where else ''}:"]
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:10]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    {', '.join(node['target'])}" + (f"  [{summary[:300]}]" if summary else ""))
        if len(v["nodes"]) > 10:
            lines.append(f"    … and {len(v['nodes']) - 10} more element(s)")
        lines.append(f"    help: {v['helpUrl']}")
    return "\n".join(lines)


def check_page(page, *, where: str | None = None) -> list[dict]:
    """Fail on serious or critical WCAG 2.1 A/AA violations; return the minor and moderate ones."""
    violations = run_axe(page)
    bad = blocking(violations)
    assert not bad, describe(bad, where=where or page.url)
    return violations
