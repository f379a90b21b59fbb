"""Failure injection, chosen per token: at run time (`POST /failures`) or by token prefix.

Token-prefix grammar, so black-box tests and demos need no setup call. A token is zero or
more directives followed by anything; directives apply in the order written, each with its
own count:

    token     = directive* rest
    directive = "fail-" code ["-" times] ["-ra" seconds] "-"
              | "slow-" milliseconds "-"
              | "drop-" [times "-"]
    code      = "unregistered" | "invalid_argument" | "sender_id_mismatch"
              | "third_party_auth_error" | "quota_exceeded" | "unavailable" | "internal"

`times` absent means every attempt; `-raN` adds `Retry-After: N`; `slow-` applies to every
attempt; `drop-` closes the connection without answering. Examples:

    fail-unregistered-abc           always UNREGISTERED (404)
    fail-unavailable-2-abc          UNAVAILABLE (503) twice, then success
    fail-quota_exceeded-1-ra3-abc   one 429 with Retry-After: 3, then success
    slow-1500-abc                   answers after 1.5 s
    slow-200-fail-internal-1-abc    every answer 0.2 s late; the first one INTERNAL (500)
    drop-1-abc                      the first connection closed unanswered, then success

Precedence for one attempt: a live runtime rule for the exact token, else a live runtime
rule for `"*"` (every token, one shared count: "the next N sends fail"), else the prefix.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from geopush.emulator.errors import FcmErrorCode

WILDCARD = "*"

_FAIL = re.compile(r"fail-(?P<code>[a-z_]+)(?:-(?P<times>\d+))?(?:-ra(?P<ra>\d+))?-")
_SLOW = re.compile(r"slow-(?P<ms>\d+)-")
_DROP = re.compile(r"drop-(?:(?P<times>\d+)-)?")


class RuleError(ValueError):
    """A failure rule that cannot be applied (bad code, negative count, ...)."""


@dataclass(frozen=True, slots=True)
class FailureRule:
    """What to do to the next `times` attempts of a token (`times=None`: every attempt)."""

    error: FcmErrorCode | None = None
    times: int | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 0:
            raise RuleError("times must be >= 0 or null")
        if self.retry_after is not None and self.retry_after < 0:
            raise RuleError("retry_after must be >= 0 or null")
        if self.delay_s < 0:
            raise RuleError("delay_s must be >= 0")
        if self.error is None and not self.drop and not self.delay_s:
            raise RuleError("a rule needs an error, drop or delay_s")


@dataclass(frozen=True, slots=True)
class Injection:
    """The merged effect of every live rule on one attempt."""

    error: FcmErrorCode | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    drop: bool = False


@dataclass(slots=True)
class _LiveRule:
    rule: FailureRule
    remaining: int | None = field(default=None)

    @classmethod
    def of(cls, rule: FailureRule) -> _LiveRule:
        return cls(rule=rule, remaining=rule.times)

    @property
    def live(self) -> bool:
        return self.remaining is None or self.remaining > 0

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


def parse_code(name: str) -> FcmErrorCode:
    """`"unregistered"` or `"UNREGISTERED"` → the code; RuleError for anything else."""
    try:
        return FcmErrorCode(name.upper())
    except ValueError:
        known = ", ".join(code.value for code in FcmErrorCode)
        raise RuleError(f"unknown error {name!r}; known: {known}") from None


def parse_token_directives(token: str) -> list[FailureRule]:
    """The rules a token's prefix asks for (empty for an ordinary token)."""
    rules: list[FailureRule] = []
    pos = 0
    while True:
        if m := _FAIL.match(token, pos):
            try:
                code = parse_code(m["code"])
            except RuleError:
                break  # "fail-typo-..." is an ordinary token, not half a directive
            rules.append(
                FailureRule(
                    error=code,
                    times=int(m["times"]) if m["times"] else None,
                    retry_after=int(m["ra"]) if m["ra"] else None,
                )
            )
        elif m := _SLOW.match(token, pos):
            rules.append(FailureRule(delay_s=int(m["ms"]) / 1000))
        elif m := _DROP.match(token, pos):
            rules.append(FailureRule(drop=True, times=int(m["times"]) if m["times"] else None))
        else:
            break
        pos = m.end()
    return rules


def _merge(rules: list[_LiveRule]) -> Injection | None:
    """Consume one attempt from each live rule and fold them into one injection."""
    live = [r for r in rules if r.live]
    if not live:
        return None
    error: FcmErrorCode | None = None
    retry_after: int | None = None
    delay_s = 0.0
    drop = False
    for entry in live:
        entry.consume()
        rule = entry.rule
        delay_s += rule.delay_s
        drop = drop or rule.drop
        if error is None and rule.error is not None:
            error, retry_after = rule.error, rule.retry_after
    return Injection(error=error, retry_after=retry_after, delay_s=delay_s, drop=drop)


class FailureBook:
    """Every failure rule of one emulator, with the counts already used. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: dict[str, list[_LiveRule]] = {}
        # Prefix rules are parsed on a token's first attempt and kept, so "fail twice then
        # succeed" counts across attempts. Only tokens with directives are kept.
        self._prefixed: dict[str, list[_LiveRule]] = {}

    def set_rule(self, token: str, rule: FailureRule) -> None:
        """Replace the runtime rule of `token` (or of every token, with `"*"`)."""
        with self._lock:
            self._runtime[token] = [_LiveRule.of(rule)]

    def clear(self) -> None:
        """Forget runtime rules and restart every prefix count."""
        with self._lock:
            self._runtime.clear()
            self._prefixed.clear()

    def next_injection(self, token: str) -> Injection | None:
        """What to do to this attempt of `token`; counts it against the rule that applies."""
        with self._lock:
            for source in (self._runtime.get(token), self._runtime.get(WILDCARD)):
                if source and (injection := _merge(source)):
                    return injection
            if token not in self._prefixed:
                rules = parse_token_directives(token)
                if not rules:
                    return None
                self._prefixed[token] = [_LiveRule.of(rule) for rule in rules]
            return _merge(self._prefixed[token])

    def describe(self) -> list[dict[str, object]]:
        """The runtime rules and their remaining counts, for `GET /failures`."""
        with self._lock:
            return [
                {
                    "token": token,
                    "error": entry.rule.error.value if entry.rule.error else None,
                    "times": entry.rule.times,
                    "remaining": entry.remaining,
                    "retry_after": entry.rule.retry_after,
                    "delay_s": entry.rule.delay_s,
                    "drop": entry.rule.drop,
                }
                for token, entries in self._runtime.items()
                for entry in entries
            ]
