"""Feature flag evaluation events are information, not warnings: they show in
``telemetryflow logs`` and under ``--severity info``, never under ``warn``."""

from __future__ import annotations

from telemetryflow.testing import capture


def test_every_evaluation_is_an_info_event_whatever_its_outcome() -> None:
    with capture() as cap:
        cap.client.set_feature_flags({"checkout": True, "theme": {"variants": ["a", "b"]}})
        cap.client.is_enabled("checkout", user_id="u1")
        cap.client.get_variant("theme", user_id="u1")
        cap.client.is_enabled("no_such_flag", user_id="u1")  # reason error, default returned
        events = [e for e in cap.logs() if e.log.event_name == "feature_flag.evaluation"]
    assert len(events) == 3
    assert {(e.log.severity_number, e.log.severity_text) for e in events} == {(9, "INFO")}
    assert [e.attributes.get("error.type") for e in events] == [None, None, "flag_not_found"]
