"""The report in a real browser (Debian's chromium, driven by Playwright): no network request of any kind,
no console error, every chart drawn with marks, the prevalence chart's data equal to `summarize --format
json`, a script-closing text left inert (no dialog), and a screenshot."""

from __future__ import annotations

import json
import os
import shutil

import duckdb
import pytest

from test_analytics import ENG, ENG_THRESHOLDS, build_store, run_spec

XSS = "</script><script>alert(1)</script>"
CHARTS = ("prevalence", "trend", "cooccur", "distribution")


def chromium_path() -> str:
    found = os.environ.get("EMOCLI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no chromium: install the OS package (`apt-get install -y chromium`; .ci/run does)")
    return found


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    """A store whose top anger text and one language value carry a script-closing payload, and its report."""
    from typer.testing import CliRunner

    from emocli.cli.app import app

    folder = tmp_path_factory.mktemp("browser")
    db = folder / "emotions.duckdb"
    build_store(db, [run_spec("run-1", "tiny", ENG, ENG_THRESHOLDS, 500, seed=41)])
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE scores SET text = $t WHERE id = (SELECT id FROM scores WHERE anger IS NOT NULL "
                    "ORDER BY anger DESC, id LIMIT 1)", {"t": XSS})
        con.execute("UPDATE scores SET language = $t WHERE id < 8", {"t": XSS.replace("1", "2")})
        # a pair never predicted together: lift 0 must still draw
        con.execute("UPDATE scores SET labels = list_filter(labels, lambda x: x <> 'fear') "
                    "WHERE list_contains(labels, 'anger')")
    runner = CliRunner()
    out = folder / "report.html"
    result = runner.invoke(app, ["report", "--db", str(db), "--out", str(out), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = runner.invoke(app, ["summarize", "--db", str(db), "--by", "language", "--format", "json"])
    assert summary.exit_code == 0, summary.output
    return out, json.loads(summary.stdout)


@pytest.mark.slow
def test_report_renders_offline_in_chromium(report_page, tmp_path):
    from playwright.sync_api import sync_playwright

    page_file, summary = report_page
    url = page_file.resolve().as_uri()
    blocked, requested, problems, dialogs = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            def route(request_route):
                if request_route.request.url == url:
                    request_route.continue_()
                else:
                    blocked.append(request_route.request.url)
                    request_route.abort()

            page.route("**/*", route)
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: problems.append(f"{message.type}: {message.text}")
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(url, wait_until="load")
            page.evaluate("window.emocliReport.ready")
            page.wait_for_timeout(300)  # anything scheduled after the charts would show here
            marks = {name: page.evaluate(f"document.querySelectorAll('#chart-{name} svg .role-mark > *').length")
                     for name in CHARTS}
            prevalence = page.evaluate("window.emocliReport.views.prevalence.data('prevalence')"
                                       ".map(d => ({group: d.group, emotion: d.emotion, prevalence: d.prevalence,"
                                       " texts: d.texts, dominant: d.dominant}))")
            example_cell = page.locator("#examples td.text", has_text="alert(1)").first.inner_text()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()

    assert requested == [url] and blocked == []  # the page itself, nothing else
    assert problems == [] and dialogs == []
    assert all(count > 0 for count in marks.values()), marks
    assert example_cell == XSS  # shown as text
    got = {(d["group"], d["emotion"]): (d["prevalence"], d["texts"], d["dominant"]) for d in prevalence}
    expected = {(r["language"], label): (r[label], r["texts"], r["dominant"]) for r in summary for label in ENG}
    assert got == expected and any(XSS.replace("1", "2") == key[0] for key in got)
    assert (tmp_path / "report.png").stat().st_size > 20_000
