"""The ``opsloop`` CLI against the real emulator: every command, its output, its exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from opsloop import cli
from opsloop.services.record import record_batch
from opsloop.store.firestore_store import FirestoreStore

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
NOW_MS = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
HOUR = 3_600_000
MODELS = {"gpt-5": (0.9, 900.0, 0.02), "gemini": (0.97, 400.0, 0.004), "claude": (0.6, 2500.0, 0.05)}


def traffic(n: int, seed: int = 7, hours: int = 6) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = list(MODELS)[i % 3]
        ok_p, lat, cost = MODELS[model]
        ok = rng.random() < ok_p
        obs = {"id": f"obs-{i:05d}", "component": f"router:{model}", "outcome": "success" if ok else "failure",
               "durationMs": round(rng.lognormvariate(0, 0.3) * lat, 3), "costUsd": cost,
               "ts": NOW_MS - hours * HOUR + (i * hours * HOUR) // n, "policyVersion": "router-core@1.0.0"}
        if not ok:
            obs["errorCode"] = rng.choice(["UPSTREAM_5XX", "CONTEXT_TOO_LONG"])
        out.append(obs)
    return out


def ingest(store: FirestoreStore, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 500):
        record_batch(store, {"observations": items[i : i + 500]})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shards_shows_the_layout_and_what_waits_per_key(seeded: FirestoreStore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ingest(seeded, traffic(60))
    code, out, _ = run(capsys, "shards")
    assert code == 0 and "no layout adopted yet" in out and "shards = 1" in out
    assert "1-0  60 waiting" in out  # the progress bar of `opsloop score` has the same total
    assert run(capsys, "score")[0] == 0
    seeded.configs.set("scoring", {"shards": 2})
    code, out, _ = run(capsys, "shards", "--json")
    info = json.loads(out)
    assert code == 0 and (info["current"], info["configured"], info["legacy"]) == (1, 2, "none")
    assert info["waiting"] == {"1-0": 0, "2-0": 0, "2-1": 0} and info["storedKeys"] == ["1-0"]


@pytest.fixture()
def scored(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> FirestoreStore:
    ingest(seeded, traffic(900))
    code, _, err = run(capsys, "score", "--cards")
    assert code == 0, err
    return seeded


def add_draft(store: FirestoreStore, version: str, weights: dict[str, float]) -> None:
    doc = {**store.policies.policy("router-core", "1.0.0")}
    doc.update(version=version, status="draft", createdBy="test", notes="a draft",
               params={**doc["params"], "modelWeights": weights})
    assert store.policies.create_version(doc, {"actor": "test", "action": "draft", "id": "router-core",
                                             "from": None, "to": version})


# ---------------------------------------------------------------------------------------------- status
def test_score_shows_progress_and_status_prints_every_component_and_window(
        seeded: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    ingest(seeded, traffic(900))
    code, out, err = run(capsys, "score", "--cards", "--progress")
    assert code == 0, err
    assert "scored 900 (invalid 0)" in out and "skill cards written" in out
    assert "900/900" in err  # the progress bar reached the whole backlog
    code, out, _ = run(capsys, "status")
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("router:")]
    assert len(lines) == 9  # 3 components x 3 windows
    assert any(ln.split()[:3] == ["router:gemini", "24h", "300"] for ln in lines), out
    code, out, _ = run(capsys, "status", "--window", "24h", "--json")
    rows = json.loads(out)
    assert {r["component"] for r in rows} == {f"router:{m}" for m in MODELS} and {r["window"] for r in rows} == {"24h"}
    assert sum(r["n"] for r in rows) == 900


def test_status_component_shows_its_skill_card(scored: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--component", "router:claude")
    assert code == 0
    assert "skill card: router:claude" in out
    assert "- success rate" in out and "failure modes (24h): " in out
    assert "UPSTREAM_5XX" in out and "CONTEXT_TOO_LONG" in out
    assert "governed by router-core@1.0.0" in out
    code, out, _ = run(capsys, "status", "--component", "policy~router-core")
    assert code == 0 and "best model: gemini" in out and "policy version in use: 1.0.0" in out
    code, out, _ = run(capsys, "status", "--component", "router:gemini", "--json")
    card = json.loads(out)["card"]
    assert card["judged"] and any(s["code"] == "within_cost_budget" for s in card["strengths"])


def test_status_of_an_unknown_component_is_a_usage_error(seeded: FirestoreStore,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "status", "--component", "nope")
    assert code == cli.EXIT_USAGE and "E_LEARN_NOT_FOUND" in err and "nope" in err


# -------------------------------------------------------------------------------------------- policies
def test_policies_list_show_and_diff(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    add_draft(seeded, "1.0.1", {"gpt-5": 0.3, "gemini": 0.55, "claude": 0.15})
    code, out, _ = run(capsys, "policies", "list")
    assert code == 0
    rows = [ln.split()[:3] for ln in out.splitlines() if ln.startswith("router-core")]
    assert rows == [["router-core", "1.0.0", "active"], ["router-core", "1.0.1", "draft"]]
    code, out, _ = run(capsys, "policies", "show", "router-core")
    assert code == 0 and json.loads(out)["version"] == "1.0.0"
    code, out, _ = run(capsys, "policies", "diff", "router-core@1.0.1")
    assert code == 0
    changed = [ln for ln in out.splitlines() if ln.startswith("*")]
    assert [ln.split()[1] for ln in changed] == ["modelWeights.gemini", "modelWeights.gpt-5"]
    assert "0.25" in changed[0] and "0.55" in changed[0]
    assert "2 param(s) differ" in out
    code, out, _ = run(capsys, "policies", "diff", "router-core@1.0.1", "--json")
    assert json.loads(out)["changed"] == {"modelWeights.gemini": [0.25, 0.55], "modelWeights.gpt-5": [0.6, 0.3]}


@pytest.mark.parametrize("argv", [
    ("policies", "show", "nope"),
    ("policies", "show", "router-core@9.9.9"),
    ("policies", "diff", "router-core@9.9.9"),
    ("policies", "list", "--id", "nope"),
    ("activate", "router-core@9.9.9"),
])
def test_unknown_policies_are_usage_errors_with_a_code(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str],
                                                       argv: tuple[str, ...]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == cli.EXIT_USAGE, (out, err)
    assert "[E_LEARN_NOT_FOUND]" in err and err.count("\n") == 1  # one line


# ------------------------------------------------------------------------------------ activate/rollback
def test_activate_and_rollback_directly_are_audited_with_the_cli_actor(
        seeded: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    add_draft(seeded, "1.0.1", {"gpt-5": 0.3, "gemini": 0.55, "claude": 0.15})
    code, out, _ = run(capsys, "activate", "router-core@1.0.1", "--actor", "cli:ops-alice")
    assert code == 0 and "active 1.0.0 -> 1.0.1" in out
    code, out, _ = run(capsys, "activate", "router-core", "1.0.1")
    assert code == 0 and "already active; nothing changed" in out
    code, out, _ = run(capsys, "rollback", "router-core", "--json")
    assert code == 0 and json.loads(out) == {"id": "router-core", "active": "1.0.0", "previous": "1.0.1",
                                             "changed": True}
    audit = seeded.audit.log(policy_id="router-core")
    assert [a["action"] for a in audit[:2]] == ["rollback", "activate"]
    assert audit[1]["actor"] == "cli:ops-alice"
    assert audit[0]["actor"].startswith("cli:") and audit[0]["actor"] != "cli:ops-alice"  # cli:$USER by default
    code, _, err = run(capsys, "rollback", "router-core")
    assert code == cli.EXIT_REFUSED and "[E_LEARN_NOTHING_TO_ROLL_BACK]" in err
    code, _, err = run(capsys, "activate", "router-core@not-semver")
    assert code == cli.EXIT_USAGE and "[E_LEARN_INVALID_ARGUMENT]" in err
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "audit chain intact" in out


def test_activate_with_url_but_no_token_is_an_environment_error(seeded: FirestoreStore,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("OPSLOOP_ID_TOKEN", None)
    code, _, err = run(capsys, "activate", "router-core@1.0.0", "--url", "http://127.0.0.1:9")
    assert code == cli.EXIT_ENVIRONMENT and "admin ID token" in err


# --------------------------------------------------------------------------------------------- tune/seed
def test_tune_drafts_and_seed_is_idempotent(scored: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "seed", "--dir", str(ROOT / "seed"))
    assert code == 0 and "kept" in out and "created" not in out
    code, out, _ = run(capsys, "tune", "--json")
    assert code == 0
    outcomes = json.loads(out)["outcomes"]
    assert [o["policy_id"] for o in outcomes] == ["router-core"]
    code, _, err = run(capsys, "seed", "--dir", "/nonexistent")
    assert code == cli.EXIT_USAGE and "no seed directory" in err


# ---------------------------------------------------------------------------------------------- export
def test_export_joins_rewards_streams_in_pages_and_is_reproducible(
        scored: FirestoreStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    late = traffic(30, seed=99)
    for i, o in enumerate(late):
        o["id"] = f"late-{i:03d}"
    ingest(scored, late)  # ingested after the scoring run: exported, but not scored yet
    out_file = tmp_path / "ds.parquet"
    since = str(NOW_MS - 7 * HOUR)
    code, _, err = run(capsys, "export", "--since", since, "--out", str(out_file), "--page-size", "100")
    assert code == 0, err
    manifest = json.loads((tmp_path / "ds.parquet.manifest.json").read_text())
    table = pq.read_table(out_file)
    assert manifest["rows"] == table.num_rows == 930
    assert pq.ParquetFile(out_file).metadata.num_row_groups == manifest["rowGroups"] == 10  # one per page
    assert manifest["unscored"] == 30 and manifest["rewardVersions"] == {"1.0.0": 900}
    rows = table.to_pylist()
    assert [(r["ts"], r["id"]) for r in rows] == sorted((r["ts"], r["id"]) for r in rows)
    assert manifest["timeRange"] == {"tsMin": rows[0]["ts"], "tsMax": rows[-1]["ts"]}
    rewards = {s.id: s.to_dict() for s in scored.db.collection("ops_rewards").stream()}
    for r in rows:
        if r["id"].startswith("late-"):
            assert r["scored"] is False and r["reward"] is None
        else:
            assert r["scored"] is True and r["reward"] == rewards[r["id"]]["score"]
            assert r["latencyPenalty"] == rewards[r["id"]]["details"]["latencyPenalty"]
    failed = [r for r in rows if r["outcome"] == "failure"]
    assert failed and all(r["errorCode"] in ("UPSTREAM_5XX", "CONTEXT_TOO_LONG") for r in failed)

    # the same snapshot twice: same content hash; a filtered one: only those components, in order
    again = tmp_path / "again.parquet"
    run(capsys, "export", "--since", since, "--out", str(again), "--page-size", "333")
    assert json.loads((tmp_path / "again.parquet.manifest.json").read_text())["contentSha256"] == \
        manifest["contentSha256"]
    sub = tmp_path / "sub.parquet"
    code, _, _ = run(capsys, "export", "--since", since, "--out", str(sub), "--components",
                     "router:claude,router:gemini", "--page-size", "50")
    sub_rows = pq.read_table(sub).to_pylist()
    assert code == 0 and len(sub_rows) == 620
    assert sub_rows == [r for r in rows if r["component"] in ("router:claude", "router:gemini")]


@pytest.mark.parametrize(("argv", "text"), [
    (("--since", "yesterday"), "ISO date/time"),
    (("--since", "2026-11-02", "--until", "2026-11-01"), "--until must be after --since"),
])
def test_export_rejects_bad_ranges_and_writes_nothing(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path, argv: tuple[str, ...], text: str) -> None:
    code, _, err = run(capsys, "export", *argv, "--out", str(tmp_path / "x.parquet"))
    assert code == cli.EXIT_USAGE and text in err and "[E_LEARN_INVALID_ARGUMENT]" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["existing-dir", "dir-with-slash", "missing-parent", "parent-is-a-file",
                                   "manifest-is-a-dir"])
def test_export_out_that_cannot_be_a_file_is_bad_input_and_leaves_nothing(
        seeded: FirestoreStore, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "taken.parquet.manifest.json").mkdir()
    out = {"existing-dir": str(tmp_path), "dir-with-slash": f"{tmp_path}/new/", "missing-parent":
           str(tmp_path / "missing" / "ds.parquet"), "parent-is-a-file": str(tmp_path / "file" / "ds.parquet"),
           "manifest-is-a-dir": str(tmp_path / "taken.parquet")}[where]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, _, err = run(capsys, "export", "--since", str(NOW_MS - 7 * HOUR), "--out", out)
    assert code == cli.EXIT_USAGE and err.count("\n") == 1, err
    assert "[E_LEARN_INVALID_ARGUMENT]" in err and "--out" in err and ("directory" in err), err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no .partial, no directory made
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}*"))  # nor beside the directory


@pytest.mark.parametrize(("argv", "flag"), [
    (("score", "--at"), "--at"), (("tune", "--at"), "--at"), (("report", "--at"), "--at"),
    (("export", "--since"), "--since"), (("export", "--since", "0", "--until"), "--until"),
])
@pytest.mark.parametrize("value", ["1e23", "100000000000000000000000", "1e20", "-1", "nan", "inf",
                                   "9999-12-31T23:59:59-01:00", "1969-12-31", "", "²"])
def test_extreme_times_are_bad_input_against_a_real_store(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path, argv: tuple[str, ...], flag: str,
                                                          value: str) -> None:
    code, _, err = run(capsys, *argv[:-1], f"{argv[-1]}={value}", *(["--out", str(tmp_path / "x")]
                                                                   if argv[0] in ("export", "report") else []))
    assert code == cli.EXIT_USAGE, err
    assert err.count("\n") == 1 and "[E_LEARN_INVALID_ARGUMENT]" in err and flag in err, err
    assert list(tmp_path.iterdir()) == []


def test_times_at_the_ends_of_the_range_work(seeded: FirestoreStore, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    ingest(seeded, traffic(900))
    code, _, err = run(capsys, "export", "--since", "0", "--until", "9998-12-31T23:59:59.999Z", "--out",
                       str(tmp_path / "all.parquet"))
    assert code == 0, err
    assert json.loads((tmp_path / "all.parquet.manifest.json").read_text())["rows"] == 900
    for at in ("1970-01-01", "9998-12-31T23:59:59.999Z"):
        code, _, err = run(capsys, "report", "--at", at, "--hours", "2160", "--out", str(tmp_path / "r.html"))
        assert code == 0, err


def test_listings_show_stored_times_no_date_can_hold(seeded: FirestoreStore,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Documents written around validation (Admin SDK) with times past year 9999 or NaN: listed, not exit 6."""
    db = seeded.db
    db.collection("ops_policies").document("odd@1.0.0").set(
        {"id": "odd", "version": "1.0.0", "status": "draft", "createdBy": "admin-sdk", "createdAt": 9 * 10**18})
    db.collection("ops_stats").document("odd:c~1h").set({"component": "odd:c", "window": "1h", "n": 1,
                                                         "ts": float("nan")})
    db.collection("ops_audit").document("odd-entry").set({"ts": -(9 * 10**18), "actor": "admin-sdk",
                                                          "action": "draft", "id": "odd"})
    for argv, shown in ((("policies", "list", "--id", "odd"), "9000000000000000000 ms"),
                        (("status",), "nan ms"), (("audit", "log", "--policy", "odd"), "-9000000000000000000 ms")):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert shown in out, out


# ------------------------------------------------------------------------------------ the installed command
def test_installed_command_help_and_a_missing_emulator(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("opsloop")
    assert exe.exists(), "the project installs the opsloop console script (pip install -e .)"
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("status", "policies", "activate", "rollback", "audit", "score", "tune", "seed", "export",
                    "report"):
        assert command in helped.stdout
    env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    missing = subprocess.run([str(exe), "--emulator", "127.0.0.1:9", "status"], capture_output=True, text=True,
                             timeout=60, env=env, cwd=tmp_path)
    assert missing.returncode == cli.EXIT_ENVIRONMENT
    assert "no Firestore emulator at 127.0.0.1:9" in missing.stderr
    bad = subprocess.run([str(exe), "status", "--window", "3d"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == cli.EXIT_USAGE
    # production mode (no emulator) without usable credentials
    no_creds = {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"), "GOOGLE_CLOUD_PROJECT": "p"}
    creds = subprocess.run([str(exe), "status"], capture_output=True, text=True, timeout=60, env=no_creds)
    assert creds.returncode == cli.EXIT_ENVIRONMENT, creds.stderr
    assert "no Google credentials" in creds.stderr and "Traceback" not in creds.stderr


# ------------------------------------------------------------------------------------------ edge cases
def test_export_survives_admin_written_oddities_and_pages_exactly(
        seeded: FirestoreStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Documents written around validation (Admin SDK): a timestamp inside meta, fractional ms times
    shared by a whole page; --page-size 1 must neither repeat nor lose a row."""
    col = seeded.db.collection("ops_observations")
    for i in range(5):
        col.document(f"odd-{i}").set({"component": "router:gpt-5", "outcome": "success", "durationMs": 10,
                                      "ts": NOW_MS - 1000.5, "meta": {"at": dt.datetime.now(dt.UTC), "i": i},
                                      "shard": "1-0", "receivedAt": dt.datetime.now(dt.UTC)})
    out_file = tmp_path / "odd.parquet"
    code, _, err = run(capsys, "export", "--since", str(NOW_MS - 60_000), "--out", str(out_file),
                       "--page-size", "1", "--components", "router:gpt-5,router:claude")
    assert code == 0, err
    rows = pq.read_table(out_file).to_pylist()
    assert [r["id"] for r in rows] == [f"odd-{i}" for i in range(5)]
    assert all(r["ts"] == NOW_MS - 1001 and '"i":' in r["meta"] for r in rows)


def test_cli_edge_cases_have_the_documented_exit_codes(seeded: FirestoreStore,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policies", "list", "--id", "router-core", "--status", "canary")
    assert code == 0 and "no canary versions" in out
    code, _, err = run(capsys, "export", "--since", "0", "--components", " , ")
    assert code == cli.EXIT_USAGE and "names no component" in err
    for argv in (("status", "--component", "a/b"), ("policies", "show", "x/y"), ("activate", "a/b@1.0.0")):
        code, _, err = run(capsys, *argv)
        assert code == cli.EXIT_USAGE and "without '/'" in err, argv
    seeded.configs.set("flags", {"learning": {"enabled": False, "autoActivatePolicies": False}})
    code, _, err = run(capsys, "tune")
    assert code == cli.EXIT_REFUSED and "[E_LEARN_DISABLED]" in err
    with pytest.raises(SystemExit) as bad_limit:
        cli.main(["audit", "log", "--limit", "-1"])
    assert bad_limit.value.code == cli.EXIT_USAGE


def test_project_flag_wins_over_the_environment(scored: FirestoreStore, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("opsloop")
    env = {**os.environ, "GCLOUD_PROJECT": "demo-opsloop"}
    same = subprocess.run([str(exe), "status", "--json"], capture_output=True, text=True, timeout=60, env=env)
    other = subprocess.run([str(exe), "--project", "demo-other", "status", "--json"], capture_output=True,
                           text=True, timeout=60, env=env)
    assert same.returncode == other.returncode == 0, (same.stderr, other.stderr)
    assert len(json.loads(same.stdout)) == 9 and json.loads(other.stdout) == []


def test_reward_whatif_prints_before_and_after_and_writes_nothing(scored: FirestoreStore, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    proposal = {"rules": [{"match": "router:*", "version": "cheap-1", "terms": [
        {"name": "cost", "source": "costUsd", "weight": 0.9, "direction": "lower", "bound": 0.05},
        {"name": "ok", "source": "success", "weight": 0.1, "direction": "higher"}]}]}
    path = tmp_path / "proposal.json"
    path.write_text(json.dumps(proposal))
    rewards = scored.count("ops_rewards")
    code, out, err = run(capsys, "reward", "whatif", "--config", str(path), "--days", "1", "--json", "--quiet")
    assert code == 0, err
    got = json.loads(out)
    assert got["observations"] == 900 and scored.count("ops_rewards") == rewards
    by = {c["component"]: c for c in got["components"]}
    assert by["router:gemini"]["versionAfter"] == "cheap-1" and by["router:gemini"]["versionBefore"] == "1.0.0"
    # claude is the dearest ($0.05 = the bound): under a cost-only formula it ranks last
    [policy] = got["policies"]
    assert policy["rankingAfter"][-1]["model"] == "claude" and policy["rankingAfter"][0]["model"] == "gemini"
    code, out, _ = run(capsys, "reward", "whatif", "--config", str(path), "--days", "1", "--quiet")
    assert code == 0 and "re-scored; nothing written" in out and "ranking proposed: gemini" in out
    path.write_text(json.dumps({"rules": [{"match": "router:*", "version": "1.0.0"}]}))
    code, _, err = run(capsys, "reward", "whatif", "--config", str(path), "--quiet")
    assert code == 2 and "rules.0.version" in err
    path.write_text("{not json")
    code, _, err = run(capsys, "reward", "whatif", "--config", str(path), "--quiet")
    assert code == 2 and "not JSON" in err


def test_reward_backfill_adopts_a_changed_config_runs_it_to_the_end_and_reports_status(
        scored: FirestoreStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "reward", "backfill", "--status")
    assert code == 0 and "readers read reward generation 1 (* 1.0.0)" in out, err
    scored.configs.set("reward_config", {"rules": [{"match": "router:*", "version": "cheap-1", "terms": [
        {"name": "cost", "source": "costUsd", "weight": 1.0, "direction": "lower", "bound": 0.05}]}]}, merge=False)
    code, out, err = run(capsys, "reward", "backfill", "--chunk", "250", "--json", "--quiet")
    assert code == 0, err
    got = json.loads(out)
    assert got["done"] and got["scored"] == 900 and got["chunks"] >= 4 and got["readGeneration"] == 2
    assert got["readVersions"] == {"*": "1.0.0", "router:*": "cheap-1"} and not got["backfilling"]
    code, out, _ = run(capsys, "reward", "backfill")
    assert code == 0 and "nothing to backfill" in out and "generation 2" in out
