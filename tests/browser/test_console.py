"""The admin console in a real browser (Debian's chromium, driven by Playwright) on the Firebase emulator suite.

`firebase emulators:start` serves the built console (Hosting), Auth, Firestore and the Python callables
(Functions); the data is made by the loop's own services against the suite's Firestore.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from playwright import sync_api as playwright_sync
from playwright.sync_api import Page, expect

from scripts import suite as suite_mod

pytestmark = pytest.mark.browser


# The functions emulator starts a worker on a function's first call: seconds on a loaded machine
expect.set_options(timeout=15_000)

NOW = dt.datetime.now(dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
ADMIN = ("alice@example.com", "correct-horse-1")
VIEWER = ("bob@example.com", "battery-staple-2")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextmanager
def suite_env(suite: suite_mod.Suite) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in suite.env()}
    os.environ.update(suite.env())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def suite() -> Iterator[suite_mod.Suite]:
    s = suite_mod.start_suite(free=True, env={"OPSLOOP_CONFIG_CACHE_S": "0", "OPSLOOP_COST_CACHE_S": "0"})
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def loop(suite: suite_mod.Suite) -> Any:
    """The suite's Firestore with the seed, two components' traffic scored, and a draft from the tuner."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from opsloop.services import tuning
    from opsloop.services.record import record_batch
    from opsloop.services.seed import load_seed
    from opsloop.store.firestore_store import FirestoreStore

    with suite_env(suite):
        db = firestore.Client(project=suite_mod.PROJECT, credentials=AnonymousCredentials())
    store = FirestoreStore(db)
    load_seed(store, suite_mod.ROOT / "seed")
    store.configs.set("scoring", {"safetyMarginMs": 0})
    items: list[dict[str, Any]] = []
    for i in range(180):
        ts = NOW_MS - 50 * 60_000 + i * 15_000
        bad = i % 3 == 0
        logged = {"policyVersion": "router-core@1.0.0", "id": f"req-{i:04d}"}  # the router's logged decisions
        items.append({"component": "router:gpt-5", "outcome": "failure" if bad else "success",
                      "durationMs": 5000 if bad else 900, "costUsd": 0.03, "ts": ts, "propensity": 0.6, **logged})
        items.append({"component": "router:gemini", "outcome": "success", "durationMs": 400 + i % 50,
                      "costUsd": 0.012, "ts": ts, "propensity": 0.25, **logged, "id": f"req-g{i:04d}"})
        items.append({"component": "router", "outcome": "success" if i % 9 else "failure",
                      "durationMs": 700 + (i * 37) % 900, "costUsd": 0.02, "ts": ts})
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})
    # the scheduled function, run on the suite's Functions emulator as Cloud Scheduler calls it
    assert suite.trigger("scoreObservations", NOW)["status"] == 200
    assert store.db.collection("ops_stats").document("router~24h").get().exists
    drafted = tuning.auto_tune(store, NOW).outcomes
    assert [(o.action, o.version) for o in drafted] == [("drafted", "1.0.1")]
    suite.create_user(*ADMIN, claims={"role": "admin"})
    suite.create_user(*VIEWER)
    return store


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is installed by `make test` (make browser)"
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"uncaught errors in the console: {errors}"


def sign_in(page: Page, suite: suite_mod.Suite, who: tuple[str, str]) -> None:
    page.goto(suite.console_url)
    page.get_by_label("Email").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_label("Password").press("Enter")  # the keyboard submits the form


SHOTS = suite_mod.ROOT / ".emulator-logs" / "console"


def not_blank(png: bytes, name: str) -> None:
    """The screenshot has content (kept in .emulator-logs/console/ to look at)."""
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{name}.png").write_bytes(png)
    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, "the screenshot is (nearly) one colour"
    dominant = max(c for c, _ in colours)
    assert dominant < 0.97 * img.width * img.height, "the screenshot is blank"


def status_of(page: Page, version: str) -> Any:
    return page.locator(f'span.status[data-version="{version}"]')


def add_draft(store: Any, version: str, weights: dict[str, float]) -> None:
    """A draft of router-core, as an admin's tool or the tuner would write it."""
    assert store.policies.create_version(
        {"id": "router-core", "version": version, "status": "draft", "createdBy": "test",
         "params": {"modelWeights": weights}},
        {"actor": "test", "action": "draft", "id": "router-core", "from": None, "to": version})


def shadow_then_canary(page: Page, version: str, split: str) -> None:
    """Start the version's shadow, then its canary at ``split``, through the console's buttons and dialogs."""
    page.get_by_role("link", name="Policies").click()
    page.get_by_role("button", name=f"Start shadow router-core {version}").click()
    page.get_by_role("dialog").get_by_role("button", name="Start shadow").click()
    expect(status_of(page, version)).to_have_text("shadow", timeout=60_000)
    page.get_by_role("button", name=f"Start canary router-core {version}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"The chosen share of traffic gets {version}")
    dialog.get_by_label("Canary split").select_option(split)
    dialog.get_by_role("button", name="Start canary").click()
    expect(page.locator("#outcome")).to_have_text(f"Canary of router-core {version} started.", timeout=60_000)
    expect(status_of(page, version)).to_have_text("canary")


def audit_entries(store: Any, action: str) -> list[dict[str, Any]]:
    q = store.db.collection("ops_audit").where(filter=FieldFilter("action", "==", action))
    return [d.to_dict() for d in q.stream()]


def test_admin_sees_stats_and_a_draft_activates_it_live_rolls_back_and_sees_the_audit(
    page: Page, suite: suite_mod.Suite, loop: Any,
) -> None:
    sign_in(page, suite, ADMIN)
    # Components: the scored stats, formatted for people, and the charts over time
    expect(page.get_by_role("heading", name="Components", exact=True)).to_be_visible(timeout=60_000)
    stats = page.locator("table.stats").first
    expect(stats.get_by_role("row", name="router")).to_be_visible()
    cells = stats.get_by_role("row", name="router").get_by_role("cell").all_inner_texts()
    requests_, reward, success, p95, cost = cells
    assert requests_ == "180" and success.endswith(" %") and p95.endswith(" ms") and cost.startswith("$"), cells
    for text in (reward, success, p95, cost):  # people's numbers: at most 3 significant digits
        digits = re.sub(r"[^0-9]", "", text).lstrip("0").rstrip("0")
        assert 1 <= len(digits) <= 3, f"{text!r} has more than 3 significant digits"
    expect(page.locator("figure.chart canvas").first).to_be_visible()
    page.get_by_role("radio", name="1h").check()
    expect(page.get_by_role("table", name="Components, last 1h")).to_be_visible()
    not_blank(page.screenshot(full_page=True), "components")

    # Policies: the tuner's draft beside the active version, differing params marked
    page.get_by_role("link", name="Policies").click()
    expect(status_of(page, "1.0.1")).to_have_text("draft", timeout=60_000)
    expect(status_of(page, "1.0.0")).to_have_text("active")
    assert page.locator("table.policies mark").count() >= 1
    expect(page.get_by_role("columnheader", name="Version")).to_be_visible()
    not_blank(page.screenshot(full_page=True), "policies")

    page.get_by_role("button", name="Activate router-core 1.0.1").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("1.0.1 becomes the active version; 1.0.0 is archived")
    dialog.get_by_role("button", name="Activate").click()
    expect(status_of(page, "1.0.1")).to_have_text("active", timeout=60_000)  # no reload: a listener
    expect(status_of(page, "1.0.0")).to_have_text("archived")
    expect(page.locator("#outcome")).to_have_text("router-core 1.0.1 is active.")

    page.get_by_role("button", name="Roll back router-core").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(status_of(page, "1.0.0")).to_have_text("active", timeout=60_000)

    # a change made elsewhere (the CLI, another admin) shows up without a reload too
    from opsloop.services import policies

    policies.activate(loop, "router-core", "1.0.1", actor="cli-operator")
    expect(status_of(page, "1.0.1")).to_have_text("active", timeout=60_000)

    # Audit: the admin's entries name her uid and email and the console
    page.get_by_role("link", name="Audit").click()
    entries = page.get_by_role("table", name="Audit entries, newest first")
    expect(entries.get_by_role("row").filter(has_text="rollback")).to_contain_text(ADMIN[0])
    expect(entries.get_by_role("row").filter(has_text="rollback")).to_contain_text("admin-ui")
    chains = page.get_by_role("table", name="Chain status")
    expect(chains).to_contain_text("links consistent")
    not_blank(page.screenshot(full_page=True), "audit")
    [rollback] = audit_entries(loop, "rollback")
    assert rollback["via"] == "admin-ui" and rollback["actorEmail"] == ADMIN[0]
    assert rollback["actor"] not in ("", "unknown", ADMIN[0])  # the uid

    # a removed tail is seen at once: the chain's head still names the entry
    [newest] = [d for d in loop.db.collection("ops_audit").stream() if d.to_dict()["actor"] == "cli-operator"]
    newest.reference.delete()
    expect(chains).to_contain_text("broken: the head names seq", timeout=60_000)


def test_a_refused_action_shows_its_code_and_flags_are_set_from_the_console(
    page: Page, suite: suite_mod.Suite, loop: Any,
) -> None:
    from opsloop.services import policies

    add_draft(loop, "2.0.0", {"gpt-5": 0.2, "gemini": 0.7, "claude": 0.1})
    sign_in(page, suite, ADMIN)
    page.get_by_role("link", name="Learning").click()
    page.get_by_label("Learning enabled").uncheck()
    page.get_by_role("button", name="Save flags").click()
    page.get_by_role("dialog").get_by_role("button", name="Save flags").click()
    expect(page.locator("#outcome")).to_have_text("Flags saved.", timeout=60_000)
    expect(page.get_by_text("Now: learning off")).to_be_visible()
    not_blank(page.screenshot(full_page=True), "learning")

    page.get_by_role("link", name="Policies").click()
    page.get_by_role("button", name="Start canary router-core 2.0.0").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Canary split").select_option("canary20")
    dialog.get_by_role("button", name="Start canary").click()
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text("E_LEARN_DISABLED", timeout=60_000)
    expect(outcome).to_contain_text("Refused:")
    expect(status_of(page, "2.0.0")).to_have_text("draft")  # nothing changed
    flags = loop.db.collection("config").document("flags").get().to_dict()
    assert flags["learning"]["enabled"] is False
    [entry] = audit_entries(loop, "set_flags")
    assert entry["via"] == "admin-ui" and entry["actorEmail"] == ADMIN[0]
    policies.activate(loop, "router-core", "1.0.0", actor="test")  # leave the first test's state readable


def test_hosting_serves_the_console_with_its_security_headers(suite: suite_mod.Suite) -> None:
    import urllib.request

    with urllib.request.urlopen(suite.console_url, timeout=30) as resp:
        headers = resp.headers
        assert b'<div id="app">' in resp.read()
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_a_signed_in_user_without_the_admin_role_sees_only_not_an_admin(
    page: Page, suite: suite_mod.Suite, loop: Any,
) -> None:
    sign_in(page, suite, VIEWER)
    expect(page.get_by_role("heading", name="Not an admin")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("navigation")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    not_blank(page.screenshot(), "not-admin")


def test_every_view_renders_at_390px_without_sideways_scrolling(
    browser: Any, suite: suite_mod.Suite, loop: Any,
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, suite, ADMIN)
        expect(page.get_by_role("navigation", name="Views")).to_be_visible(timeout=60_000)
        for name in ("Components", "Policies", "Rollouts", "Experiments", "Drift", "Events", "Audit", "Learning",
                     "Config"):
            page.get_by_role("link", name=name).click()
            expect(page.locator("main h1")).to_be_visible()
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{name}: the page is {width}px wide at a 390px viewport"
            inner = page.evaluate("""[...document.querySelectorAll('.table-wrap, figure.chart')]
                .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className + ' ' + e.scrollWidth)""")
            assert inner == [], f"{name}: these scroll sideways at 390px: {inner}"
            not_blank(page.screenshot(full_page=True), f"390-{name.lower()}")
    finally:
        context.close()


def test_stats_update_in_the_open_console_when_the_scheduled_scorer_runs(
    page: Page, suite: suite_mod.Suite, loop: Any,
) -> None:
    from opsloop.services.record import record_batch

    sign_in(page, suite, ADMIN)
    row = page.get_by_role("table", name="Components, last 24h").get_by_role("row", name="router")
    expect(row.get_by_role("cell").first).to_have_text("180", timeout=60_000)
    later = NOW + dt.timedelta(minutes=5)
    record_batch(loop, {"observations": [
        {"component": "router", "outcome": "success", "durationMs": 500, "costUsd": 0.02,
         "ts": NOW_MS - 60_000 + i} for i in range(20)]})
    assert suite.trigger("scoreObservations", later)["status"] == 200
    expect(row.get_by_role("cell").first).to_have_text("200", timeout=60_000)  # no reload: a listener


def test_a_shadow_then_canary_started_from_the_console_is_evaluated_shown_and_rejected_with_a_reason(
    page: Page, suite: suite_mod.Suite, loop: Any,
) -> None:
    from opsloop.services import flags

    flags.set_learning_flags(loop, {"enabled": True}, "test")
    add_draft(loop, "3.0.0", {"gpt-5": 0.1, "gemini": 0.8, "claude": 0.1})
    sign_in(page, suite, ADMIN)
    shadow_then_canary(page, "3.0.0", "canary20")

    from opsloop.services.record import record_batch

    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    record_batch(loop, {"observations": [  # the canary's arms, as the router reports them
        {"component": "router:gemini" if arm == "challenger" else "router:gpt-5", "arm": arm,
         "policyVersion": f"router-core@{version}", "outcome": "success" if i % (9 if arm == "challenger" else 3) else
         "failure", "durationMs": 600, "costUsd": 0.02, "ts": now_ms + i}  # after the canary started
        for arm, version in (("champion", "1.0.0"), ("challenger", "3.0.0")) for i in range(60)]})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert suite.trigger("scoreObservations", later)["status"] == 200
    assert suite.trigger("evaluateRollouts", later)["status"] == 200
    page.get_by_role("link", name="Rollouts").click()
    expect(page.locator("section.rollout").first).to_contain_text("router-core 3.0.0 vs 1.0.0", timeout=60_000)
    evaluation = page.get_by_role("table", name="Latest evaluation").first
    expect(evaluation.get_by_role("row", name="Decision")).to_be_visible(timeout=60_000)
    expect(evaluation.get_by_role("row", name="n champion / challenger")).to_contain_text("60 / 60")
    expect(evaluation.get_by_role("row", name="Difference (challenger − champion)")).to_contain_text("[")
    expect(evaluation.get_by_role("row", name="SRM p")).to_be_visible()
    expect(page.locator("section.rollout figure.chart").first).to_contain_text("Reward difference")
    not_blank(page.screenshot(full_page=True), "rollouts")

    page.get_by_role("link", name="Policies").click()
    page.get_by_role("button", name="Reject router-core 3.0.0").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Reject").click()  # the reason is required: the dialog stays
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason").fill("p95 latency too high for checkout")
    dialog.get_by_role("button", name="Reject").click()
    expect(status_of(page, "3.0.0")).to_have_text("rejected", timeout=60_000)
    [entry] = audit_entries(loop, "reject")
    assert entry["reason"] == "p95 latency too high for checkout" and entry["via"] == "admin-ui"
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("table", name="Audit entries, newest first")).to_contain_text(
        "p95 latency too high for checkout")
    page.get_by_role("link", name="Experiments").click()
    expect(page.get_by_role("table", name="Ended canaries, newest first").get_by_role("row", name="router-core")
           ).to_contain_text("3.0.0 vs 1.0.0", timeout=60_000)


def test_the_keyboard_alone_opens_cancels_and_confirms_an_action(page: Page, suite: suite_mod.Suite,
                                                                 loop: Any) -> None:
    from opsloop.services import policies

    policies.activate(loop, "router-core", "1.0.0", actor="test")
    sign_in(page, suite, ADMIN)
    expect(page.get_by_role("link", name="Policies")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Policies").focus()
    page.keyboard.press("Enter")
    activate = page.get_by_role("button", name="Activate router-core 1.0.1")
    activate.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")  # cancels: nothing changes
    expect(dialog).to_have_count(0)
    expect(status_of(page, "1.0.1")).not_to_have_text("active")
    activate.focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Activate")).to_be_focused()  # the dialog takes the focus
    page.keyboard.press("Enter")
    expect(status_of(page, "1.0.1")).to_have_text("active", timeout=60_000)


def test_drift_episodes_and_their_alerts_are_shown(page: Page, suite: suite_mod.Suite, loop: Any) -> None:
    from opsloop.domain.drift import advance_episodes

    tests = {"p95Latency": {"drifted": True, "statistic": "ks", "p": 0.00002},
             "successRate": {"drifted": False, "statistic": "binomial", "p": 0.41}}
    raised = loop.drift.update("router:gpt-5", lambda st: advance_episodes("router:gpt-5", st, tests, NOW_MS))
    assert raised == ["p95Latency"]
    sign_in(page, suite, ADMIN)
    page.get_by_role("link", name="Drift").click()
    row = page.locator("table.drift").get_by_role("row", name="router:gpt-5")
    expect(row).to_contain_text("yes", timeout=60_000)
    expect(row).to_contain_text("p95Latency: drifting since")
    expect(row).to_contain_text("successRate: p 0.41")
    alerts = page.get_by_role("table", name="Alerts, newest first")
    expect(alerts.get_by_role("row").filter(has_text="drift")).to_contain_text("router:gpt-5 p95Latency: ks p < 0.001")
    not_blank(page.screenshot(full_page=True), "drift")

    # the drift alert goes out as an event (here to a webhook of the test's); the console shows its delivery
    from opsloop.services import events as delivery
    from opsloop.store.sinks import WebhookSink
    from tests.emulator.test_events import Receiver

    hook = Receiver()
    try:
        loop.configs.set("events", {"topic": None, "webhookUrl": hook.url})
        result = delivery.deliver(loop, lambda cfg: [WebhookSink(hook.url, 5)], dt.datetime.now(dt.UTC))
        assert result.delivered >= 1 and any("drifted" in b["text"] for b in hook.bodies)
    finally:
        hook.server.shutdown()
    page.get_by_role("link", name="Events").click()
    row = page.get_by_role("table", name="Events, newest first").get_by_role("row").filter(has_text="drift.detected")
    expect(row).to_contain_text("delivered", timeout=60_000)
    expect(row).to_contain_text("router:gpt-5: p95Latency drifted")


def test_a_canary_is_promoted_from_the_console(page: Page, suite: suite_mod.Suite, loop: Any) -> None:
    from opsloop.services import flags, policies

    flags.set_learning_flags(loop, {"enabled": True}, "test")
    policies.activate(loop, "router-core", "1.0.0", actor="test")
    add_draft(loop, "4.0.0", {"gpt-5": 0.2, "gemini": 0.7, "claude": 0.1})
    sign_in(page, suite, ADMIN)
    shadow_then_canary(page, "4.0.0", "ab")
    page.get_by_role("button", name="Promote router-core 4.0.0").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("4.0.0 becomes the active version for all traffic; 1.0.0 is archived")
    dialog.get_by_role("button", name="Promote").click()
    expect(status_of(page, "4.0.0")).to_have_text("active", timeout=60_000)
    expect(status_of(page, "1.0.0")).to_have_text("archived")
    [entry] = audit_entries(loop, "promote")
    assert (entry["to"], entry["via"], entry["actorEmail"]) == ("4.0.0", "admin-ui", ADMIN[0])
