"""Feature flags defined in configuration, evaluated locally and deterministically.

A flag set is an immutable value loaded once, at configuration time, from a mapping,
a JSON or YAML file, or an environment variable. Evaluating a flag is a pure
function of the flag and the targeting key: no I/O, no network, no lock, so it is
safe on any hot path. Swapping in a new set (``client.set_feature_flags``) is one
reference assignment.

Percentage rollouts hash ``"<flag key>:<targeting key>"`` with SHA-256 into one of
10,000 buckets, so a user gets the same answer in every process and every release,
and different flags split users independently.

The accepted shape, in JSON or YAML (an optional top-level ``flags`` key is allowed)::

    new_checkout: true                     # static on/off
    theme: dark                            # static variant
    fast_path: {rollout: 25}               # on for 25% of targeting keys
    beta: {enabled: false}                 # kill switch: always off
    button:
      variants: {red: "#c05543", blue: "#3355ff"}   # or a list of names
      default: red
      rollout: {blue: 50}                  # the rest gets the default
      targets: {u_1: blue}                 # per-key overrides
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from opentelemetry._logs import SeverityNumber

from telemetryflow._configuration.errors import ConfigError

__all__ = [
    "EMPTY_FLAGS",
    "EVALUATION_SEVERITY",
    "Flag",
    "FlagEvaluation",
    "FlagSet",
    "parse_flags_setting",
    "targeting_key_of",
]

EVALUATION_SEVERITY = SeverityNumber.INFO
"""The severity of a ``feature_flag.evaluation`` event, whatever its outcome: an
evaluation is routine information (a missing flag is told by the event's
``error.type``, and the caller got its default), never a warning or an error."""

BUCKETS = 10_000
"""Rollout resolution: percentages are honoured to 0.01%."""

PROVIDER_NAME = "telemetryflow"

# OpenFeature resolution reasons, as the OpenTelemetry conventions spell them.
STATIC = "static"
DEFAULT = "default"
TARGETING_MATCH = "targeting_match"
SPLIT = "split"
DISABLED = "disabled"
ERROR = "error"

_BOOLEAN_VARIANTS: Mapping[str, Any] = MappingProxyType({"on": True, "off": False})
_ALLOWED_KEYS = frozenset(
    {"enabled", "variants", "default", "rollout", "targets", "version", "value"}
)
_TARGETING_CONTEXT_KEYS = ("targeting_key", "user_id", "distinct_id")


def targeting_key_of(context: Mapping[str, Any]) -> str | None:
    """The key rollouts are computed on: ``targeting_key``, else ``user_id``, else
    ``distinct_id``."""
    for name in _TARGETING_CONTEXT_KEYS:
        value = context.get(name)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None


def bucket(flag_key: str, targeting_key: str) -> int:
    """A stable bucket in ``[0, BUCKETS)`` for this flag and key."""
    digest = hashlib.sha256(f"{flag_key}:{targeting_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class FlagEvaluation:
    """The outcome of one evaluation, with the reason the conventions ask for."""

    key: str
    value: Any
    variant: str | None
    reason: str
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Flag:
    """One flag: named variants, a default, optional rollout weights and overrides.

    ``rollout`` holds ``(variant, buckets)`` pairs in declaration order; buckets not
    assigned to any variant fall to ``default_variant``.
    """

    key: str
    variants: Mapping[str, Any]
    default_variant: str
    enabled: bool = True
    rollout: tuple[tuple[str, int], ...] = ()
    targets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    version: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", MappingProxyType(dict(self.variants)))
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))
        if self.default_variant not in self.variants:
            raise ConfigError(
                f"feature_flags: {self.key}: default variant "
                f"{self.default_variant!r} is not one of its variants",
                field="feature_flags",
            )

    @property
    def is_boolean(self) -> bool:
        return self.variants == _BOOLEAN_VARIANTS

    def evaluate(self, targeting_key: str | None) -> FlagEvaluation:
        """Resolve this flag for ``targeting_key`` (may be None)."""
        if not self.enabled:
            variant = "off" if self.is_boolean else self.default_variant
            return self._result(variant, DISABLED)
        if targeting_key is not None and targeting_key in self.targets:
            return self._result(self.targets[targeting_key], TARGETING_MATCH)
        if not self.rollout:
            return self._result(self.default_variant, STATIC)
        if targeting_key is None:
            return self._result(self.default_variant, DEFAULT)
        position = bucket(self.key, targeting_key)
        upper = 0
        for variant, share in self.rollout:
            upper += share
            if position < upper:
                return self._result(variant, SPLIT)
        return self._result(self.default_variant, SPLIT)

    def _result(self, variant: str, reason: str) -> FlagEvaluation:
        return FlagEvaluation(self.key, self.variants[variant], variant, reason)


@dataclass(frozen=True)
class FlagSet:
    """An immutable set of flags by key. Build it with :meth:`from_mapping`,
    :meth:`from_file` or :meth:`load`.

    Example:
        >>> flags = FlagSet.from_mapping({"new_checkout": {"rollout": 25}})
        >>> flags.evaluate("new_checkout", "user-42").reason
        'split'
    """

    flags: Mapping[str, Flag] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    """Where the flags came from (``mapping``, a file name, or both), for ``describe()``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", MappingProxyType(dict(self.flags)))

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "mapping") -> FlagSet:
        """Parse flag definitions (see the module docstring for the shape).

        Raises:
            ConfigError: listing every malformed flag.
        """
        if _is_wrapper(data):
            data = data["flags"]
        if not isinstance(data, Mapping):
            raise ConfigError(
                "feature_flags: must be a mapping of flag key to definition", field="feature_flags"
            )
        flags: dict[str, Flag] = {}
        problems: list[str] = []
        for key, spec in data.items():
            try:
                flags[str(key)] = _parse_flag(str(key), spec)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(
                "invalid feature flags: " + "; ".join(problems),
                field="feature_flags",
                problems=problems,
            )
        return cls(flags, source)

    @classmethod
    def from_file(cls, path: str | Path) -> FlagSet:
        """Load a ``.json``, ``.yaml`` or ``.yml`` file (YAML needs ``pyyaml``).

        Raises:
            ConfigError: the file cannot be read or parsed, or holds bad flags.
        """
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"feature_flags: cannot read {file}: {exc.strerror}", field="feature_flags"
            ) from None
        if file.suffix.lower() in (".yaml", ".yml"):
            data = _parse_yaml(text, file)
        else:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise ConfigError(
                    f"feature_flags: {file} is not valid JSON: {exc}", field="feature_flags"
                ) from None
        return cls.from_mapping(data if data is not None else {}, source=file.name)

    @classmethod
    def load(
        cls, flags: Mapping[str, Any] | FlagSet | None = None, file: str | Path | None = None
    ) -> FlagSet:
        """Flags from ``file``, then ``flags`` on top (a key in both: ``flags`` wins)."""
        loaded = cls.from_file(file) if file is not None else cls()
        if isinstance(flags, FlagSet):
            return loaded.merged(flags)
        if flags is not None:
            return loaded.merged(cls.from_mapping(flags))
        return loaded

    def merged(self, other: FlagSet) -> FlagSet:
        """A new set with ``other``'s flags replacing same-key flags of this one."""
        source = " + ".join(s for s in (self.source, other.source) if s)
        return FlagSet({**self.flags, **other.flags}, source)

    # -- reading -----------------------------------------------------------------------
    def evaluate(self, key: str, targeting_key: str | None = None) -> FlagEvaluation:
        """Resolve ``key``; a missing flag is an evaluation with ``error_type``."""
        flag = self.flags.get(key) if isinstance(key, str) else None
        if flag is None:
            return FlagEvaluation(
                str(key),
                None,
                None,
                ERROR,
                "flag_not_found",
                f"no feature flag named {str(key)[:64]!r}",
            )
        return flag.evaluate(targeting_key)

    def __contains__(self, key: object) -> bool:
        return key in self.flags

    def __len__(self) -> int:
        return len(self.flags)

    def keys(self) -> list[str]:
        return sorted(self.flags)

    def __repr__(self) -> str:
        names = ", ".join(self.keys()[:8]) + (", …" if len(self.flags) > 8 else "")
        return f"FlagSet({len(self.flags)} flags: {names})" if self.flags else "FlagSet()"

    __str__ = __repr__


EMPTY_FLAGS = FlagSet()


def parse_flags_setting(text: str) -> FlagSet:
    """Parse an environment value: inline JSON if it starts with ``{``, else a path.

    Raises:
        ValueError: (a ``ConfigError``) the value cannot be used.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(
                f"feature_flags: not valid JSON: {exc}", field="feature_flags"
            ) from None
        return FlagSet.from_mapping(data, source="environment")
    return FlagSet.from_file(stripped)


# -- parsing one flag ---------------------------------------------------------------------
def _is_wrapper(data: Any) -> bool:
    """``{"flags": {...}}`` holding the definitions, rather than one flag named
    ``flags`` (whose definition would use only the option names)."""
    if not isinstance(data, Mapping) or set(data) != {"flags"}:
        return False
    inner = data["flags"]
    return isinstance(inner, Mapping) and not set(inner) <= _ALLOWED_KEYS


def _bad(key: str, message: str) -> ConfigError:
    return ConfigError(f"feature_flags: {key}: {message}", field="feature_flags")


def _parse_yaml(text: str, file: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            f"feature_flags: reading {file.name} needs PyYAML; "
            "pip install 'telemetryflow[yaml]' or use a JSON file",
            field="feature_flags",
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"feature_flags: {file} is not valid YAML: {exc}", field="feature_flags"
        ) from None


def _parse_flag(key: str, spec: Any) -> Flag:
    if not key:
        raise _bad(key, "flag keys must be non-empty")
    if isinstance(spec, bool):
        return Flag(key, _BOOLEAN_VARIANTS, "on" if spec else "off")
    if isinstance(spec, (str, int, float)):
        return Flag(key, {str(spec): spec}, str(spec))
    if not isinstance(spec, Mapping):
        raise _bad(key, "must be true/false, a value, or a mapping")
    unknown = set(spec) - _ALLOWED_KEYS
    if unknown:
        raise _bad(
            key, f"unknown option(s) {sorted(map(str, unknown))}; allowed: {sorted(_ALLOWED_KEYS)}"
        )
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad(key, "'enabled' must be true or false")
    version = spec.get("version")
    version_text = None if version is None else str(version)
    if "variants" in spec:
        variants = _variants(key, spec["variants"])
        default = spec.get("default", next(iter(variants)))
        if not isinstance(default, str) or default not in variants:
            raise _bad(key, f"'default' must name one of the variants {list(variants)}")
    else:
        if "value" in spec and "rollout" in spec:
            raise _bad(key, "give 'value' (static) or 'rollout' (percentage), not both")
        variants = dict(_BOOLEAN_VARIANTS)
        value = spec.get("value", "rollout" not in spec)  # a rollout's remainder is off
        if not isinstance(value, bool):
            raise _bad(key, "'value' of an on/off flag must be true or false")
        default = "on" if value else "off"
    rollout = _rollout(key, spec.get("rollout"), variants, default)
    if isinstance(rollout, str):  # 0% or 100%: the same variant for everybody
        default, rollout = rollout, ()
    targets = _targets(key, spec.get("targets"), variants)
    return Flag(key, variants, default, enabled, rollout, targets, version_text)


def _variants(key: str, raw: Any) -> dict[str, Any]:
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(v, str) for v in raw):
        return {v: v for v in raw}
    if isinstance(raw, Mapping) and raw and all(isinstance(v, str) and v for v in raw):
        return dict(raw)
    raise _bad(key, "'variants' must be a non-empty list of names or mapping name: value")


def _percent(key: str, value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and 0 <= value <= 100)
    ):
        raise _bad(key, "rollout percentages must be numbers from 0 to 100")
    return round(value * BUCKETS / 100)


def _rollout(
    key: str, raw: Any, variants: Mapping[str, Any], default: str
) -> tuple[tuple[str, int], ...] | str:
    """The rollout pairs, or the one variant everybody gets when a share is 100%."""
    if raw is None:
        return ()
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if set(variants) != set(_BOOLEAN_VARIANTS):
            raise _bad(
                key,
                "a bare rollout percentage is for on/off flags; "
                "give {variant: percent} for variants",
            )
        shares = {"on": _percent(key, raw)}
    elif isinstance(raw, Mapping):
        shares = {}
        for variant, percent in raw.items():
            if variant is True or variant is False:  # YAML reads on/off keys as booleans
                variant = "on" if variant else "off"
            if variant not in variants:
                raise _bad(key, f"rollout names unknown variant {variant!r}")
            shares[str(variant)] = _percent(key, percent)
    else:
        raise _bad(key, "'rollout' must be a percentage or a mapping of variant to percent")
    total = sum(shares.values())
    if total > BUCKETS:
        raise _bad(key, "rollout percentages add up to more than 100")
    if total == 0:
        return default
    for variant, share in shares.items():
        if share == BUCKETS:
            return variant
    return tuple((v, s) for v, s in shares.items() if s > 0)


def _targets(key: str, raw: Any, variants: Mapping[str, Any]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _bad(key, "'targets' must map targeting keys to variants")
    targets: dict[str, str] = {}
    for target, variant in raw.items():
        if isinstance(variant, bool) and set(variants) == set(_BOOLEAN_VARIANTS):
            variant = "on" if variant else "off"
        if variant not in variants:
            raise _bad(key, f"target {target!r} names unknown variant {variant!r}")
        targets[str(target)] = str(variant)
    return targets
