"""The pages in headless Chromium against a real server: log in with a token, submit a smoke sweep
(a bad spec first, whose error shows inline), watch it finish, open its heatmap, curves and report,
run a query. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.load import load
from analysis.select import format_choice
from analysis.verdict import verdict_info
from backdoor_sweep.errors import SweepError
from sweep.query import run_query
from sweep.spec import parse_spec
from sweep.store import Store
from tests.service.live_server import ROOT, LiveServer, add_token

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "artifacts"
#: Chromium logs every 4xx answer of a fetch as a console error; the page shows those itself
EXPECTED_CONSOLE = "Failed to load resource: the server responded with a status of"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is absent ({CHROMIUM} not found): install Debian's chromium package")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_log_in_submit_watch_draw_and_query_in_chromium(browser, tmp_path):
    store = Store(tmp_path / "store")
    token = add_token(store.root, "alice")
    server = LiveServer(store.root).start()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    errors, outside = [], []
    context.on("weberror", lambda e: errors.append(str(e.error)))

    def route(r):
        if r.request.url.startswith((server.url, "blob:", "about:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        # no token yet: the list sends us to the login page; a wrong token is refused there
        page.goto(server.url + "/ui/")
        page.wait_for_url("**/ui/login?next=%2Fui%2F")
        page.fill("#token", "bsw_wrong")
        page.click("#login")
        page.wait_for_selector("#error:has-text('a valid bearer token is required')")
        page.fill("#token", token)
        page.click("#login")
        page.wait_for_url(server.url + "/ui/")
        page.wait_for_selector("text=logged in as alice")
        page.wait_for_selector("#empty:not([hidden])")

        # submit: a bad spec shows the line `run` gives, inline; then the smoke preset
        page.click("header nav >> text=Submit")
        page.wait_for_function("() => document.querySelector('#spec').value.includes('name:')")
        preset = page.input_value("#spec")
        bad = yaml.safe_load(preset)
        bad["grid"]["poison_rate"] = [0.1, 1.5]
        with pytest.raises(SweepError) as cli_error:
            parse_spec(bad)
        page.fill("#spec", yaml.safe_dump(bad))
        page.click("#submit")
        page.wait_for_selector(f"#error:has-text({str(cli_error.value)!r})")
        assert store.sweeps() == []
        page.fill("#spec", preset)
        page.fill("#name", "web")
        page.click("#submit")
        page.wait_for_url("**/ui/sweep?name=web")

        # watch it finish; the heatmap and the curves draw themselves
        page.wait_for_selector("#status:has-text('finished')", timeout=400_000)
        page.wait_for_selector("#counts:has-text('16 / 16 results')")
        page.wait_for_selector("#heatmap .main-svg", timeout=60_000)
        page.wait_for_selector("#curves .main-svg", timeout=60_000)
        # the pickers followed the axes as results arrived: the report's default heatmap
        picked = [page.input_value(f"#hm-{k}") for k in ("x", "y", "facet1", "facet2")]
        assert picked == ["C", "gamma", "poison_rate", "trigger_size"]
        page.wait_for_selector("#hm-info:has-text('4 panel(s), 2 × 2 cells')")
        chosen = verdict_info(load(store, "web")).recommended.choice
        expected = ", ".join(f"{k} = {v:g}" for k, v in chosen.items())
        assert page.inner_text("#choice-config") == expected, format_choice(chosen)
        assert "95% interval" in page.inner_text("#choice-metrics")
        page.screenshot(path=str(ARTIFACTS / "service-sweep.png"), full_page=True)

        # another heatmap, chosen on the page: clean accuracy, one panel, worst case
        page.select_option("#hm-metric", "clean_acc")
        page.select_option("#hm-facet1", "")
        page.select_option("#hm-facet2", "")
        page.select_option("#hm-agg", "worst")
        page.click("#hm-draw")
        page.wait_for_selector("#hm-info:has-text('1 panel(s), 2 × 2 cells')")
        # one panel (plus the grey layer of inaccurate cells), titled by what it aggregates
        axes = "Object.keys(document.getElementById('heatmap')._fullLayout).filter(k => /^xaxis[0-9]*$/.test(k))"
        assert page.evaluate(f"{axes}.length") == 1
        assert "clean_acc over C × gamma" in page.inner_text("#heatmap")

        # the report opens in a new tab, built by the server
        with context.expect_page(timeout=300_000) as opened:
            page.click("#report-link")
        report = opened.value
        report.wait_for_function(
            "() => document.title.startsWith('backdoor-sweep report: web')", timeout=300_000
        )
        report.close()

        # the list shows it finished; the SQL box answers and refuses what the CLI refuses
        page.click("header nav >> text=Sweeps")
        page.wait_for_selector("tr[data-name='web'] .status.finished")
        assert "16 / 16" in page.inner_text("tr[data-name='web']")
        page.click("header nav >> text=SQL")
        page.fill(
            "#sql",
            "select count(*) as n, round(avg(asr), 4) as asr from trials where sweep = 'web'",
        )
        page.click("#run")
        page.wait_for_selector("#result tbody td")
        cells = page.eval_on_selector_all("#result tbody td", "tds => tds.map(t => t.textContent)")
        df = run_query(store, "select round(avg(asr), 4) as asr from trials where sweep = 'web'")
        assert cells[0] == "16" and float(cells[1]) == pytest.approx(float(df["asr"][0]))
        page.screenshot(path=str(ARTIFACTS / "service-query.png"), full_page=True)
        outside_file = "select * from read_csv('/etc/passwd')"
        with pytest.raises(SweepError) as refused:
            run_query(store, outside_file)
        page.fill("#sql", outside_file)
        page.click("#run")
        page.wait_for_selector(f"#error:has-text({str(refused.value)!r})")
    finally:
        context.close()
        server.close()
    assert [e for e in errors if not e.startswith(EXPECTED_CONSOLE)] == []
    assert outside == []
