"""The control service's filter endpoints through the Flask test client: apply, list, get,
delete, activate, the dry run, restarts, and each error path of the issue.

The filter store runs on in-memory snapshot logs (tests/control_support.py; the Kafka ones are
tested in tests/e2e/test_control_kafka.py); the dry run uses the real LSST sample alerts.
"""

from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import healpy as hp
from astropy.coordinates import SkyCoord
from flask.testing import FlaskClient

from control_service.filters_api import ReferenceAlerts
from tests.control_support import ALICE, BOB, OPS, YAML, Logs, doc, error_of, make_app
from tests.datapaths import shared_data
from tests.unit.test_filter_cli import run_cli
from transforms.annotate.catalogs import catalog_dir
from transforms.annotate.dust import DUST_MAPS

# --- filters --------------------------------------------------------------------------------


def test_apply_publishes_whole_snapshots(client: FlaskClient, logs: Logs, tmp_path: Path) -> None:
    created = client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    assert created.status_code == 201
    assert created.get_json()["version"] == 1 and created.get_json()["created"] == ["bright"]
    updated = client.put(
        "/api/v1/filters/bright", data=doc(where="mag < 17"), headers={**ALICE, **YAML}
    )
    assert updated.status_code == 200 and updated.get_json()["updated"] == ["bright"]
    second = client.post(
        "/api/v1/filters",
        json={
            "apiVersion": "alertflow/v1",
            "kind": "Filter",
            "metadata": {"name": "faint", "owner": "bob"},
            "spec": {"where": "mag > 20"},
        },
        headers=BOB,
    )
    assert second.status_code == 201
    snaps = logs.snapshots()
    assert [s["version"] for s in snaps] == [1, 2, 3]
    assert [[f["metadata"]["name"] for f in s["filters"]] for s in snaps] == [
        ["bright"],
        ["bright"],
        ["bright", "faint"],
    ]
    assert snaps[1]["filters"][0]["spec"]["where"] == "mag < 17"
    listing = client.get("/api/v1/filters").get_json()
    assert listing["version"] == 3 and [f["name"] for f in listing["filters"]] == [
        "bright",
        "faint",
    ]
    assert [f["name"] for f in client.get("/api/v1/filters?owner=bob").get_json()["filters"]] == [
        "faint"
    ]
    assert error_of(client.get("/api/v1/filters?active=maybe")) == (400, "bad_request")
    one = client.get("/api/v1/filters/bright").get_json()
    assert (one["owner"], one["active"], one["version"], one["document"]["spec"]["where"]) == (
        "alice",
        True,
        3,
        "mag < 17",
    )
    as_yaml = client.get("/api/v1/filters/bright", headers={"Accept": "application/yaml"})
    assert as_yaml.mimetype == "application/yaml" and "where: mag < 17" in as_yaml.get_data(
        as_text=True
    )
    deleted = client.delete("/api/v1/filters/bright", headers=ALICE)
    assert deleted.get_json() == {"version": 4, "deleted": "bright"}
    assert [f["metadata"]["name"] for f in logs.snapshots()[-1]["filters"]] == ["faint"]
    assert error_of(client.get("/api/v1/filters/bright")) == (404, "not_found")
    assert error_of(client.delete("/api/v1/filters/bright", headers=ALICE)) == (404, "not_found")
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [
        (a["user"], a["action"], a["target"], a["old_version"], a["new_version"]) for a in audit
    ] == [
        ("alice", "filter.create", "bright", 0, 1),
        ("alice", "filter.update", "bright", 1, 2),
        ("bob", "filter.create", "faint", 2, 3),
        ("alice", "filter.delete", "bright", 3, 4),
    ]
    assert all(a["time"].endswith("+00:00") for a in audit)


def test_put_must_name_the_same_filter(client: FlaskClient, logs: Logs) -> None:
    response = client.put("/api/v1/filters/other", data=doc(), headers={**ALICE, **YAML})
    assert error_of(response) == (422, "validation_failed") and logs.snapshots() == []


def test_activate_and_deactivate(client: FlaskClient, logs: Logs) -> None:
    client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    off = client.post("/api/v1/filters/bright/deactivate", headers=ALICE).get_json()
    assert off["version"] == 2 and off["filters"][0]["active"] is False
    assert logs.snapshots()[-1] == {"version": 2, "filters": []}
    assert [f["metadata"]["name"] for f in logs.snapshots("inactive")[-1]["filters"]] == ["bright"]
    assert client.get("/api/v1/filters?active=false").get_json()["filters"][0]["name"] == "bright"
    assert (
        client.post("/api/v1/filters/bright/deactivate", headers=ALICE).get_json()["version"] == 2
    )  # no-op
    on = client.post("/api/v1/filters/bright/activate", headers=ALICE).get_json()
    assert on["version"] == 3 and [
        f["metadata"]["name"] for f in logs.snapshots()[-1]["filters"]
    ] == ["bright"]
    assert logs.snapshots("inactive")[-1]["filters"] == []
    assert error_of(client.post("/api/v1/filters/nope/activate", headers=ALICE)) == (
        404,
        "not_found",
    )


def test_restart_recovers_filters_and_version(tmp_path: Path, logs: Logs) -> None:
    app, _ = make_app(tmp_path, logs)
    c = app.test_client()
    c.post("/api/v1/filters", data=doc() + "---\n" + doc("quiet"), headers={**ALICE, **YAML})
    c.post("/api/v1/filters/quiet/deactivate", headers=ALICE)
    again, _ = make_app(tmp_path, logs)
    listing = again.test_client().get("/api/v1/filters").get_json()
    assert listing["version"] == 2 and [(f["name"], f["active"]) for f in listing["filters"]] == [
        ("bright", True),
        ("quiet", False),
    ]
    assert (
        again.test_client()
        .post("/api/v1/filters", data=doc("third"), headers={**ALICE, **YAML})
        .get_json()["version"]
        == 3
    )


def test_restart_after_deactivating_every_filter(tmp_path: Path, logs: Logs) -> None:
    """An empty active set is a valid snapshot: a restart reads it (it used to be rejected)."""
    app, _ = make_app(tmp_path, logs)
    c = app.test_client()
    c.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    c.post("/api/v1/filters/bright/deactivate", headers=ALICE)
    assert logs.snapshots()[-1] == {"version": 2, "filters": []}
    again, _ = make_app(tmp_path, logs)
    listing = again.test_client().get("/api/v1/filters").get_json()
    assert listing["version"] == 2
    assert [(f["name"], f["active"]) for f in listing["filters"]] == [("bright", False)]


def test_failed_publish_changes_nothing(tmp_path: Path, logs: Logs) -> None:
    app, store = make_app(tmp_path, logs)
    c = app.test_client()
    c.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    store._active_log.fail_next = True
    assert error_of(c.post("/api/v1/filters", data=doc("second"), headers={**ALICE, **YAML})) == (
        503,
        "unavailable",
    )
    assert [f["name"] for f in c.get("/api/v1/filters").get_json()["filters"]] == ["bright"]
    assert (
        c.post("/api/v1/filters", data=doc("second"), headers={**ALICE, **YAML}).get_json()[
            "version"
        ]
        == 2
    )
    assert [s["version"] for s in logs.snapshots()] == [1, 2]


def test_dry_run_on_reference_alerts(client: FlaskClient) -> None:
    client.post(
        "/api/v1/filters", data=doc("lsst-any", where="survey == 'lsst'"), headers={**ALICE, **YAML}
    )
    client.post("/api/v1/filters", data=doc("none", where="mag < -100"), headers={**ALICE, **YAML})
    result = client.post("/api/v1/filters/lsst-any/test").get_json()
    n = result["evaluated"]
    assert (
        n > 100 and result["matched"] == n and result["fraction"] == 1.0 and result["errors"] == 0
    )
    assert len(result["matches"]) == 100 and result["truncated"] is True
    assert set(result["matches"][0]) == {
        "filter",
        "owner",
        "filter_set_version",
        "alert_id",
        "survey",
        "object_id",
        "fields",
        "annotations",
    }
    assert result["matches"][0]["survey"] == "lsst"
    none = client.post("/api/v1/filters/none/test").get_json()
    assert (none["matched"], none["fraction"], none["matches"]) == (0, 0.0, [])
    assert error_of(client.post("/api/v1/filters/missing/test")) == (404, "not_found")


def test_dry_run_runs_the_annotators_the_filter_names(client: FlaskClient, tmp_path: Path) -> None:
    """A dust cut matched nothing here while it matched offline and in the broker: the REST dry
    run skipped the annotators. Its matches now equal a direct healpy lookup of the dust map at
    astropy's Galactic coordinates, and the offline dry run's (``filters test -f``)."""
    text = (
        "apiVersion: alertflow/v1\nkind: Filter\nmetadata: {name: low-dust, owner: alice}\n"
        "spec:\n  annotations: [dust]\n  where: dust.ebv < 0.0107\n"
    )
    assert client.post("/api/v1/filters", data=text, headers={**ALICE, **YAML}).status_code == 201
    result = client.post("/api/v1/filters/low-dust/test").get_json()
    reference = ReferenceAlerts([shared_data() / "lsst" / "alerts"], 2000).alerts()
    gal = SkyCoord([a.ra for a in reference] * u.deg, [a.dec for a in reference] * u.deg).galactic
    ebv = hp.read_map(str(catalog_dir() / DUST_MAPS["SFD"]))[
        hp.ang2pix(64, gal.l.deg, gal.b.deg, lonlat=True)
    ]
    expected = {a.alert_id for a, value in zip(reference, ebv, strict=True) if value < 0.0107}
    assert 10 < len(expected) < len(reference)
    assert (result["evaluated"], result["rejected"], result["errors"]) == (len(reference), 0, 0)
    assert (
        result["matched"] == len(expected)
        and {m["alert_id"] for m in result["matches"]} == expected
    )
    assert all(m["annotations"]["dust"]["ebv"] < 0.0107 for m in result["matches"])
    doc_file = tmp_path / "low-dust.yaml"
    doc_file.write_text(text)
    files = sorted(
        p for p in (shared_data() / "lsst" / "alerts").rglob("*") if p.suffix in (".avro", ".bin")
    )
    code, out, _ = run_cli("filters", "test", "-f", str(doc_file), "--alerts", *map(str, files))
    assert code == 0 and {json.loads(line)["alert_id"] for line in out.splitlines()} == expected


# --- each error path of the issue -------------------------------------------------------------


def test_bad_yaml_is_422_with_line_and_column(client: FlaskClient, logs: Logs) -> None:
    response = client.post(
        "/api/v1/filters",
        data="apiVersion: alertflow/v1\nkind: [Filter\nmetadata: {}\n",
        headers={**ALICE, **YAML},
    )
    assert error_of(response) == (422, "validation_failed")
    issue = response.get_json()["details"]["issues"][0]
    assert issue["path"] == "<yaml>" and issue["line"] >= 2 and issue["column"] >= 1
    assert logs.snapshots() == []


def test_unknown_field_is_422_with_line_and_column(client: FlaskClient, logs: Logs) -> None:
    body = (
        "apiVersion: alertflow/v1\nkind: Filter\nmetadata: {name: bad, owner: alice}\n"
        "spec:\n  where: |\n    mag < 18 and\n    reliabilty > 0.5\n"
    )
    response = client.post("/api/v1/filters", data=body, headers={**ALICE, **YAML})
    assert error_of(response) == (422, "validation_failed")
    assert response.get_json()["details"]["issues"] == [
        {
            "line": 7,
            "column": 5,
            "path": "spec.where",
            "message": "unknown field 'reliabilty'; did you mean 'reliability'?",
        }
    ]
    unknown_key = client.post(
        "/api/v1/filters", data=doc() + "  colour: red\n", headers={**ALICE, **YAML}
    )
    issue = unknown_key.get_json()["details"]["issues"][0]
    assert (issue["line"], issue["column"], issue["path"]) == (8, 3, "spec.colour")
    assert logs.snapshots() == []


def test_no_token_and_bad_token(client: FlaskClient, logs: Logs) -> None:
    no_token = client.post("/api/v1/filters", data=doc(), headers=YAML)
    assert error_of(no_token) == (401, "unauthorized") and no_token.headers[
        "WWW-Authenticate"
    ].startswith("Bearer")
    assert error_of(
        client.post(
            "/api/v1/filters", data=doc(), headers={**YAML, "Authorization": "Bearer wrong-token"}
        )
    ) == (401, "unauthorized")
    assert error_of(
        client.post("/api/v1/filters", data=doc(), headers={**YAML, "Authorization": "Basic abc"})
    ) == (401, "unauthorized")
    for method, path in (
        ("delete", "/api/v1/filters/x"),
        ("put", "/api/v1/filters/x"),
        ("post", "/api/v1/filters/x/activate"),
        ("post", "/api/v1/filters/x/deactivate"),
    ):
        assert error_of(getattr(client, method)(path)) == (401, "unauthorized")
    assert logs.snapshots() == []


def test_another_users_filter_is_403_but_admin_may(client: FlaskClient, logs: Logs) -> None:
    client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    assert error_of(
        client.put("/api/v1/filters/bright", data=doc(owner="bob"), headers={**BOB, **YAML})
    ) == (403, "forbidden")
    assert error_of(
        client.post("/api/v1/filters", data=doc(owner="alice"), headers={**BOB, **YAML})
    ) == (403, "forbidden")
    assert error_of(client.delete("/api/v1/filters/bright", headers=BOB)) == (403, "forbidden")
    assert error_of(client.post("/api/v1/filters/bright/deactivate", headers=BOB)) == (
        403,
        "forbidden",
    )
    assert [s["version"] for s in logs.snapshots()] == [1]
    assert (
        client.put(
            "/api/v1/filters/bright", data=doc(where="mag < 10"), headers={**OPS, **YAML}
        ).status_code
        == 200
    )
    assert client.delete("/api/v1/filters/bright", headers=OPS).get_json()["version"] == 3


def test_oversized_body_is_413(tmp_path: Path, logs: Logs) -> None:
    app, _ = make_app(tmp_path, logs, max_body_bytes=4096, max_yaml_bytes=2048)
    c = app.test_client()
    padding = "# " + "x" * 3000 + "\n"
    assert error_of(c.post("/api/v1/filters", data=padding + doc(), headers={**ALICE, **YAML})) == (
        413,
        "payload_too_large",
    )
    assert error_of(
        c.post("/api/v1/filters", data=padding * 3 + doc(), headers={**ALICE, **YAML})
    ) == (413, "payload_too_large")
    assert logs.snapshots() == []


def test_yaml_alias_bomb_is_rejected(client: FlaskClient, logs: Logs) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = doc() + "\n".join("  " + line for line in ["labels:"]) + "\n" + "\n".join(lines) + "\n"
    response = client.post("/api/v1/filters", data=bomb, headers={**ALICE, **YAML})
    assert error_of(response) == (422, "validation_failed")
    issue = response.get_json()["details"]["issues"][0]
    assert (issue["message"], issue["line"]) == (
        "too many aliases (limit 16)",
        11,
    )  # the 17th alias is on a2
    deep = doc() + "x: " + "[" * 50 + "]" * 50 + "\n"
    assert (
        client.post("/api/v1/filters", data=deep, headers={**ALICE, **YAML}).get_json()["details"][
            "issues"
        ][0]["message"]
        == "nested too deep (limit 20)"
    )
    assert logs.snapshots() == []


def test_bad_bodies(client: FlaskClient) -> None:
    assert error_of(
        client.post(
            "/api/v1/filters", data=doc(), headers={**ALICE, "Content-Type": "application/xml"}
        )
    ) == (415, "unsupported_media_type")
    assert error_of(client.post("/api/v1/filters", data="", headers={**ALICE, **YAML})) == (
        400,
        "bad_request",
    )
    assert error_of(
        client.post(
            "/api/v1/filters", data="{", headers={**ALICE, "Content-Type": "application/json"}
        )
    ) == (400, "bad_request")
    assert error_of(client.post("/api/v1/filters", json=[1, 2], headers=ALICE)) == (
        400,
        "bad_request",
    )
    assert error_of(
        client.post("/api/v1/filters", data=b"\xff\xfe", headers={**ALICE, **YAML})
    ) == (400, "bad_request")
