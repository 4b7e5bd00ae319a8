"""The C gate in front of a real Orthanc: it remembers what Python allowed, forgets at once what
may have changed, never remembers the ambiguous, and keeps time like the Python side."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from harness import Client, OrthancServer, make_user


def gate(admin: Client) -> dict[str, Any]:
    """The gate's counters: /api/health shows them to admins only."""
    stats: dict[str, Any] = admin.get("/api/health").json()["checks"]["gate"]
    return stats


@pytest.fixture
def reader(admin: Client, request: pytest.FixtureRequest) -> Client:
    return make_user(admin, "gate-" + request.node.name[-30:], "viewer")[0]


def test_the_gate_is_loaded_and_remembers_allowed_reads(orthanc: OrthancServer, admin: Client,
                                                         reader: Client) -> None:
    assert "the C gate is not configured" not in orthanc.log_text()
    before = gate(admin)
    assert before["enabled"] is True
    for _ in range(50):
        assert reader.get("/system").status_code == 200
    after = gate(admin)
    assert after["allowed_from_memory"] - before["allowed_from_memory"] >= 45


def test_logout_and_disabling_take_effect_at_once(orthanc: OrthancServer, admin: Client,
                                                  reader: Client) -> None:
    assert reader.get("/patients").status_code == 200
    assert reader.get("/patients").status_code == 200  # now remembered
    cookie = reader.http.cookies.get("onas_session")
    assert reader.post("/api/logout").status_code == 200
    stale = requests.get(orthanc.url + "/patients", cookies={"onas_session": cookie or ""},
                         timeout=10)
    assert stale.status_code == 403  # the old cookie, replayed right after logout

    reader.ensure_logged_in()
    assert reader.get("/patients").status_code == 200
    user_id = reader.get("/api/profile").json()["user"]["id"]
    assert admin.put(f"/api/admin/users/{user_id}", {"enabled": False}).status_code == 200
    assert reader.get("/patients").status_code == 403


def test_ambiguous_credentials_are_never_remembered(orthanc: OrthancServer, admin: Client,
                                                     reader: Client) -> None:
    cookie = reader.http.cookies.get("onas_session") or ""
    assert reader.get("/statistics").status_code == 200
    twice = {"Cookie": f"onas_session=forged; onas_session={cookie}"}
    before = gate(admin)
    for _ in range(5):
        r = requests.get(orthanc.url + "/statistics", headers=twice, timeout=10)
        assert r.status_code in (200, 403)  # whatever Python decides, every time
    after = gate(admin)
    assert after["allowed_from_memory"] == before["allowed_from_memory"]
    assert after["asked"] - before["asked"] >= 5


def test_remembered_reads_expire_on_the_servers_clock(orthanc: OrthancServer,
                                                       reader: Client) -> None:
    assert reader.get("/studies").status_code == 200
    assert reader.get("/studies").status_code == 200  # remembered
    orthanc.advance_clock(31 * 60)  # idle timeout (30 min) passed on the test clock
    assert reader.get("/studies").status_code == 403


def test_others_being_active_does_not_make_the_gate_forget(orthanc: OrthancServer,
                                                           admin: Client) -> None:
    """Each session's last_seen is written at most every 30 s: with many people logged in
    that is several writes a second, and none of them may clear what the gate remembers."""
    others = [make_user(admin, f"gate-other-{i}", "viewer")[0] for i in range(4)]
    seen = [o.get("/api/profile").json()["session"]["last_seen"] for o in others]
    orthanc.advance_clock(20)
    reader = make_user(admin, "gate-reader", "viewer")[0]
    assert reader.get("/system").status_code == 200
    assert reader.get("/system").status_code == 200  # remembered for about 30 s from now
    orthanc.advance_clock(11)  # the others' last_seen is due to be written, the reader's not
    before = gate(admin)
    for other in others:
        assert other.get("/patients").status_code == 200  # writes its last_seen...
        assert reader.get("/system").status_code == 200  # ...and the gate still knows
    after = gate(admin)
    assert after["allowed_from_memory"] - before["allowed_from_memory"] == len(others)
    assert after["cleared"] == before["cleared"]
    touched = [o.get("/api/profile").json()["session"]["last_seen"] for o in others]
    assert all(t >= s + 30 for s, t in zip(seen, touched, strict=True))  # they were written


def test_a_read_with_other_arguments_is_allowed_from_memory(orthanc: OrthancServer,
                                                             admin: Client,
                                                             reader: Client) -> None:
    """A viewer sends arguments with most reads (DICOMweb's includefield, a cache buster):
    the policy and the access audit look at the path only, so the gate reuses the decision.
    This also shows that Orthanc hands the filter the URI without its query string."""
    assert reader.get("/studies").status_code == 200
    before = gate(admin)
    for n in range(50):
        assert reader.get(f"/studies?n={n}&expand").status_code == 200
    after = gate(admin)
    assert after["allowed_from_memory"] - before["allowed_from_memory"] >= 45
    stranger = requests.get(orthanc.url + "/studies?n=1", timeout=10)
    assert stranger.status_code == 403  # the memory is per credential, arguments or not


def test_arguments_that_name_what_is_read_always_enter_python(orthanc: OrthancServer,
                                                              admin: Client,
                                                              reader: Client) -> None:
    """WADO-URI names the study in its arguments and the access audit records that study: a
    decision remembered for one study must not let reads of others pass unaudited."""
    assert reader.get("/wado").status_code != 403
    assert reader.get("/wado").status_code != 403  # no arguments: may be remembered
    before = gate(admin)
    for n in range(10):
        r = reader.get(f"/wado?requestType=WADO&studyUID=1.2.{n}&seriesUID=1&objectUID=1")
        assert r.status_code != 403
    after = gate(admin)
    assert after["asked"] - before["asked"] >= 10 + 1  # each of them, and the health call
    assert after["allowed_from_memory"] == before["allowed_from_memory"]
