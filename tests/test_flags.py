"""Feature flags: parsing, deterministic rollouts, and the evaluations exported."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetryflow import ConfigError, TelemetryFlowBuilder
from telemetryflow._extras.flags import FlagSet, parse_flags_setting
from telemetryflow.testing import LogEntry, TelemetryCapture, capture

USERS = [f"user-{n}" for n in range(10_000)]

FLAGS: dict[str, Any] = {
    "new_checkout": True,
    "legacy_export": False,
    "theme": "dark",
    "fast_path": {"rollout": 25},
    "beta": {"enabled": False, "rollout": 50},
    "button": {
        "variants": {"red": "#c05543", "blue": "#3355ff", "green": "#22aa22"},
        "default": "red",
        "rollout": {"blue": 30, "green": 20},
        "targets": {"vip": "green"},
        "version": 3,
    },
}


@pytest.fixture
def cap() -> Iterator[TelemetryCapture]:
    with capture() as captured:
        captured.client.set_feature_flags(FLAGS)
        yield captured


def evaluations(cap: TelemetryCapture) -> list[LogEntry]:
    return [e for e in cap.logs() if e.log.event_name == "feature_flag.evaluation"]


# -- evaluation -----------------------------------------------------------------------------
def test_static_flags_and_reasons() -> None:
    flags = FlagSet.from_mapping(FLAGS)
    assert flags.evaluate("new_checkout").value is True
    assert flags.evaluate("new_checkout").reason == "static"
    assert flags.evaluate("legacy_export").value is False
    theme = flags.evaluate("theme", "u1")
    assert (theme.value, theme.variant, theme.reason) == ("dark", "dark", "static")
    beta = flags.evaluate("beta", "u1")
    assert (beta.value, beta.reason) == (False, "disabled")
    assert flags.evaluate("fast_path").reason == "default"  # a rollout needs a targeting key
    assert flags.evaluate("fast_path").value is False
    vip = flags.evaluate("button", "vip")
    assert (vip.variant, vip.value, vip.reason) == ("green", "#22aa22", "targeting_match")
    missing = flags.evaluate("nope", "u1")
    assert (missing.reason, missing.error_type) == ("error", "flag_not_found")


def test_rollout_is_deterministic_per_user() -> None:
    first = FlagSet.from_mapping(FLAGS)
    second = FlagSet.from_mapping(json.loads(json.dumps(FLAGS)))
    for user in USERS[:500]:
        a, b = first.evaluate("fast_path", user), second.evaluate("fast_path", user)
        assert a == b and a.reason == "split"
        assert first.evaluate("button", user) == second.evaluate("button", user)


def test_rollout_is_the_same_in_another_process() -> None:
    """Buckets come from SHA-256, not ``hash()``: a new process with another hash seed
    gives every user the same answer."""
    script = (
        "import json, sys\n"
        "from telemetryflow._extras.flags import FlagSet\n"
        "flags = FlagSet.from_mapping(json.loads(sys.argv[1]))\n"
        "print(json.dumps([flags.evaluate('button', f'user-{n}').variant for n in range(300)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(FLAGS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    flags = FlagSet.from_mapping(FLAGS)
    assert json.loads(out) == [flags.evaluate("button", u).variant for u in USERS[:300]]


def rollout_share(percent: float) -> float:
    flags = FlagSet.from_mapping({"f": {"rollout": percent}})
    return sum(flags.evaluate("f", user).value for user in USERS) / len(USERS) * 100


@pytest.mark.parametrize("percent", [10, 25, 50, 75, 90])
def test_percentage_rollout_is_within_five_percent_of_target(percent: int) -> None:
    share = rollout_share(percent)
    assert abs(share - percent) <= 0.05 * percent, share


def test_small_rollouts_stay_within_sampling_noise() -> None:
    """At 1% of 10,000 ids, three standard deviations are 0.3 points."""
    assert abs(rollout_share(1) - 1) <= 0.3
    assert rollout_share(0.01) <= 0.05


def test_variant_split_matches_the_weights() -> None:
    flags = FlagSet.from_mapping(FLAGS)
    counts: dict[str, int] = {}
    for user in USERS:
        variant = flags.evaluate("button", user).variant
        assert variant is not None
        counts[variant] = counts.get(variant, 0) + 1
    for variant, target in (("blue", 30), ("green", 20), ("red", 50)):
        share = counts[variant] / len(USERS) * 100
        assert abs(share - target) <= 0.05 * target, (variant, share)


def test_flags_split_users_independently() -> None:
    """Two 50% flags overlap on about a quarter of users, not on the same half."""
    flags = FlagSet.from_mapping({"a": {"rollout": 50}, "b": {"rollout": 50}})
    both = sum(flags.evaluate("a", u).value and flags.evaluate("b", u).value for u in USERS)
    assert 0.22 < both / len(USERS) < 0.28


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(min_value=0, max_value=100),
    high=st.floats(min_value=0, max_value=100),
    user=st.text(min_size=1, max_size=20),
)
def test_raising_a_rollout_never_turns_anyone_off(low: float, high: float, user: str) -> None:
    low, high = sorted((low, high))
    before = FlagSet.from_mapping({"f": {"rollout": low}}).evaluate("f", user).value
    after = FlagSet.from_mapping({"f": {"rollout": high}}).evaluate("f", user).value
    assert after or not before


def test_zero_and_full_rollouts_become_static() -> None:
    flags = FlagSet.from_mapping(
        {
            "none": {"rollout": 0},
            "all": {"rollout": 100},
            "blue": {"variants": ["red", "blue"], "rollout": {"blue": 100}},
        }
    )
    assert flags.evaluate("none", "u").value is False
    assert flags.evaluate("all").value is True and flags.evaluate("all").reason == "static"
    assert flags.evaluate("blue").variant == "blue"


# -- configuration -------------------------------------------------------------------------
def test_invalid_definitions_list_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        FlagSet.from_mapping(
            {
                "a": {"rollout": 120},
                "b": {"variants": ["x"], "default": "y"},
                "c": {"colour": "red"},
                "d": [1, 2],
                "e": {"variants": ["x", "y"], "rollout": {"x": 60, "y": 60}},
                "f": {"value": True, "rollout": 10},
            }
        )
    assert caught.value.field == "feature_flags"
    assert len(caught.value.problems) == 6
    assert isinstance(caught.value, ValueError)


def test_files_json_and_yaml(tmp_path: Path) -> None:
    json_file = tmp_path / "flags.json"
    json_file.write_text(json.dumps({"flags": {"a": True}}))
    yaml_file = tmp_path / "flags.yaml"
    yaml_file.write_text(
        "flags:\n"
        "  b:\n"
        "    rollout: 40\n"
        "    targets: {tester: on}\n"
        "  c:\n"
        "    variants: [small, large]\n"
        "    rollout: {large: 50}\n"
    )
    from_json = FlagSet.from_file(json_file)
    from_yaml = FlagSet.from_file(yaml_file)
    assert from_json.evaluate("a").value is True
    assert from_yaml.evaluate("b", "tester").reason == "targeting_match"
    assert from_yaml.evaluate("b", "tester").value is True
    assert from_yaml.evaluate("c", "u").variant in ("small", "large")
    merged = FlagSet.load({"a": False}, file=json_file)
    assert merged.evaluate("a").value is False  # the mapping wins over the file
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        FlagSet.from_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        FlagSet.from_file(tmp_path / "missing.json")


def test_a_top_level_flags_key_wraps_definitions_unless_it_is_a_flag() -> None:
    assert FlagSet.from_mapping({"flags": {"a": True, "b": False}}).keys() == ["a", "b"]
    only = FlagSet.from_mapping({"flags": {"rollout": 10}})  # one flag called "flags"
    assert only.keys() == ["flags"] and only.evaluate("flags", "u").reason == "split"


def test_environment_value_is_inline_json_or_a_path(tmp_path: Path) -> None:
    assert parse_flags_setting('{"a": {"rollout": 10}}').keys() == ["a"]
    path = tmp_path / "flags.json"
    path.write_text('{"b": true}')
    assert parse_flags_setting(str(path)).keys() == ["b"]
    with pytest.raises(ValueError):
        parse_flags_setting("{broken")


def test_flag_set_is_immutable() -> None:
    flags = FlagSet.from_mapping(FLAGS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        flags.source = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        flags.flags["x"] = flags.flags["theme"]  # type: ignore[index]
    assert repr(flags).startswith("FlagSet(6 flags:")


# -- through the client ---------------------------------------------------------------------
def test_is_enabled_records_an_evaluation_event_per_the_conventions(
    cap: TelemetryCapture,
) -> None:
    user = next(u for u in USERS if FlagSet.from_mapping(FLAGS).evaluate("fast_path", u).value)
    with cap.client.span("request"):
        assert cap.client.is_enabled("fast_path", user_id=user) is True
    (span,) = cap.spans()
    (event,) = evaluations(cap)
    assert event.body == "feature_flag.evaluation"
    assert event.attributes == {
        "feature_flag.key": "fast_path",
        "feature_flag.provider.name": "telemetryflow",
        "feature_flag.result.reason": "split",
        "feature_flag.result.variant": "on",
        "feature_flag.result.value": True,
        "feature_flag.context.id": user,
    }
    assert event.log.span_id == span.span.span_id


def test_variants_values_defaults_and_errors(cap: TelemetryCapture) -> None:
    client = cap.client
    assert client.get_variant("button", user_id="vip") == "green"
    assert client.get_flag_value("button", user_id="vip") == "#22aa22"
    assert client.is_enabled("missing", default=True) is True
    assert client.is_enabled("button", user_id="u1") is False  # not an on/off flag
    assert client.get_variant("missing", default="control") == "control"
    assert client.is_enabled("new_checkout") is True
    events = evaluations(cap)
    assert [e.attributes["feature_flag.key"] for e in events] == [
        "button",
        "button",
        "missing",
        "button",
        "missing",
        "new_checkout",
    ]
    assert events[0].attributes["feature_flag.version"] == "3"
    missing = events[2].attributes
    assert missing["error.type"] == "flag_not_found"
    assert missing["feature_flag.result.reason"] == "error"
    assert missing["feature_flag.result.value"] is True  # the default the caller got
    mismatch = events[3].attributes
    assert mismatch["error.type"] == "type_mismatch"
    assert "feature_flag.result.variant" not in mismatch


def test_evaluation_never_touches_the_network(
    cap: TelemetryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("feature flag evaluation opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for user in USERS[:200]:
        cap.client.is_enabled("fast_path", user_id=user)
        cap.client.get_variant("button", user_id=user)
    monkeypatch.undo()
    assert len(evaluations(cap)) == 400


def test_flags_can_be_replaced_and_reset(cap: TelemetryCapture) -> None:
    cap.client.set_feature_flags(FlagSet.from_mapping({"only": True}))
    assert cap.client.feature_flags.keys() == ["only"]
    cap.client.set_feature_flags(None)  # back to the configuration's (none here)
    assert len(cap.client.feature_flags) == 0
    assert cap.client.is_enabled("only") is False


def test_without_a_running_client_evaluation_still_answers() -> None:
    client = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_x", "tfs_y")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_service("svc")
        .build()
    )
    client.set_feature_flags({"a": True})
    assert client.is_enabled("a") is True


# -- configuration through the builder (needs the builder/config/settings patch) ---------------
needs_patch = pytest.mark.skipif(
    not hasattr(TelemetryFlowBuilder, "with_feature_flags"),
    reason="needs TelemetryFlowBuilder.with_feature_flags and TelemetryConfig.feature_flags",
)


@needs_patch
def test_builder_flags_reach_the_client(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"from_file": true, "shared": false}')
    builder = TelemetryFlowBuilder().with_feature_flags({"shared": True}, file=str(path))  # type: ignore[attr-defined]
    with capture(builder) as cap:
        assert cap.client.is_enabled("from_file") and cap.client.is_enabled("shared")
        assert "feature_flags" in cap.client.config.describe()


@needs_patch
def test_builder_rejects_bad_flags_at_configuration_time() -> None:
    with pytest.raises(ConfigError):
        TelemetryFlowBuilder().with_feature_flags({"a": {"rollout": 200}})  # type: ignore[attr-defined]


@needs_patch
@pytest.mark.parametrize("variable", ["TELEMETRYFLOW_FLAGS", "TELEMETRYFLOW_FLAGS_FILE"])
def test_environment_variables(tmp_path: Path, variable: str) -> None:
    path = tmp_path / "flags.json"
    path.write_text('{"env_flag": true}')
    value = str(path) if variable.endswith("FILE") else '{"env_flag": true}'
    builder = TelemetryFlowBuilder().with_auto_configuration().with_environ({variable: value})
    with capture(builder) as cap:
        assert cap.client.is_enabled("env_flag") is True


@needs_patch
def test_a_broken_flags_variable_warns_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    builder = (
        TelemetryFlowBuilder()
        .with_auto_configuration()
        .with_environ({"TELEMETRYFLOW_FLAGS": "{broken"})
    )
    with capture(builder) as cap:
        assert len(cap.client.feature_flags) == 0
    assert "TELEMETRYFLOW_FLAGS" in caplog.text
