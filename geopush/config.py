"""Typed settings: `config/geopush.toml` (or `GEOPUSH_CONFIG`) plus `GEOPUSH_<SECTION>_<KEY>`.

Environment values win over the file. Every value is validated at start by pydantic, and a
bad one stops the start with a message naming the key and its environment form, so an
operator never finds a typo hours later in a failed push.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from geopush.campaigns.errors import OfferError
from geopush.campaigns.opening_hours import parse_hhmm
from geopush.campaigns.segments import SegmentRules
from geopush.geo.filters import PingRules
from geopush.insights.rules import RuleParams

DEFAULT_CONFIG_PATH = Path("config/geopush.toml")
ENV_PREFIX = "GEOPUSH_"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=0, le=64)  # 0: one per core
    # Run the FCM sender and the daily segment recompute in this process (a thread of its
    # own). The dwell sweeper and retention run in every process whatever this says.
    run_sender: bool = True
    shutdown_timeout_s: float = Field(10.0, ge=0)


class DatabaseConfig(_Section):
    url: str = ""
    pool_size: int = Field(10, ge=1, le=1000)
    # A request waits at most this long for a pool connection, then gets 503 + Retry-After.
    acquire_timeout_s: float = Field(5.0, gt=0)
    # On a Citus coordinator, `geopush migrate` distributes the tables (SPEC section 9):
    # "auto" when the citus extension is installed in the database; true/false to force.
    distributed: bool | Literal["auto"] = "auto"


class DataConfig(_Section):
    dir: str = ".geopush"


class GeoConfig(_Section):
    # The ping filter's defaults are its own (`geopush.geo.filters.PingRules`), written once.
    future_skew_s: float = Field(PingRules.future_skew_s, ge=0)
    max_ping_age_s: float = Field(PingRules.max_ping_age_s, gt=0)
    max_accuracy_m: float = Field(PingRules.max_accuracy_m, gt=0)
    max_speed_mps: float = Field(PingRules.max_speed_mps, gt=0)
    default_dwell_s: int = Field(300, ge=0)
    visit_timeout_s: float = Field(3600, gt=0)
    exit_buffer_m: float = Field(20, ge=0)
    # Device-time bounds on what one phone can make geopush store (SPEC section 10): a ping
    # closer than this to the device's last accepted one is refused (`too_frequent`; 0 = off),
    # and at most `max_enters_per_hour` geofences are entered in any hour of the device's own
    # time (0 = no bound); further enters wait, the device staying outside, until the hour
    # frees one. Both are far above what a phone that moves through the world produces.
    min_ping_interval_s: float = Field(PingRules.min_ping_interval_s, ge=0)
    max_enters_per_hour: int = Field(60, ge=0)
    # How often the sweeper looks for visits due a dwell of phones that stopped sending.
    sweep_interval_s: float = Field(5.0, gt=0)


def _parse_hhmm(value: str) -> time:
    """The one HH:MM rule (`geopush.campaigns.opening_hours.parse_hhmm`): two digits each,
    as an offer's and a store's hours are written; ValueError otherwise."""
    try:
        return parse_hhmm(value, "", allow_24=False)
    except OfferError:
        raise ValueError(f"expected HH:MM (00:00..23:59), got {value!r}") from None


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_UNSAFE_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob"})


class CampaignsConfig(_Section):
    quiet_hours_start: str = "21:00"
    quiet_hours_end: str = "09:00"
    daily_cap: int = Field(3, ge=0)
    conversion_window_days: int = Field(7, ge=1, le=365)
    # An offer's deeplink rides in every push; only these schemes may open from it (SPEC
    # section 10): https and the retailer app's own scheme, never javascript: or data:.
    deeplink_schemes: tuple[str, ...] = ("https",)
    # Foresight (SPEC 16): the most visit events one preview replays; beyond, a 422.
    preview_max_events: int = Field(1_000_000, ge=1, le=50_000_000)
    # SPEC section 15: a category whose last `fatigue_after` notifications went unopened
    # pauses for `fatigue_days`; a category bought within `recently_bought_days` is not
    # offered again (unless the offer sets allow_recent_buyers).
    fatigue_after: int = Field(5, ge=1, le=1000)
    fatigue_days: int = Field(14, ge=0, le=365)
    recently_bought_days: int = Field(7, ge=0, le=365)

    @field_validator("deeplink_schemes", mode="before")
    @classmethod
    def _schemes(cls, value: object) -> object:
        if isinstance(value, str):  # the environment form: "https,shop"
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            value = tuple(str(v).lower() for v in value)
            for scheme in value:
                if not _SCHEME.fullmatch(scheme):
                    raise ValueError(f"{scheme!r} is not a URI scheme")
                if scheme in _UNSAFE_SCHEMES:
                    raise ValueError(f"{scheme!r} can run code or hide content in a push")
        return value

    @field_validator("quiet_hours_start", "quiet_hours_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        _parse_hhmm(value)
        return value

    @property
    def quiet_start(self) -> time:
        return _parse_hhmm(self.quiet_hours_start)

    @property
    def quiet_end(self) -> time:
        return _parse_hhmm(self.quiet_hours_end)


class SegmentsConfig(_Section):
    # Defaults of `geopush.campaigns.segments.SegmentRules`, written once there.
    lookback_days: int = Field(SegmentRules.lookback_days, ge=1)
    new_days: int = Field(SegmentRules.new_days, ge=0)
    at_risk_days: int = Field(SegmentRules.at_risk_days, ge=1)
    inactive_days: int = Field(SegmentRules.inactive_days, ge=1)
    # Hour of the day (UTC) of the daily recompute.
    daily_recompute_hour_utc: int = Field(3, ge=0, le=23)


class InsightsConfig(_Section):
    """Thresholds of the basket rules mined in the background (SPEC section 12 defaults);
    cross-sell audiences and recommended categories are drawn from them."""

    # Defaults of `geopush.insights.rules.RuleParams`, written once there.
    min_support: float = Field(RuleParams.min_support, gt=0, le=1)
    min_confidence: float = Field(RuleParams.min_confidence, ge=0, le=1)
    min_lift: float = Field(RuleParams.min_lift, ge=0)
    max_len: int = Field(RuleParams.max_len, ge=2, le=6)
    # How many rules (single consequent, best lift first) GET /v1/insights/cross-sell shows.
    cross_sell_rules: int = Field(10, ge=1, le=100)
    # A mining run stops (422 for a query) past this many frequent itemsets: thresholds so
    # loose would hold a child process for hours.
    max_itemsets: int = Field(2_000_000, ge=1)


class FcmConfig(_Section):
    credentials_file: str = ""
    project_id: str = ""
    endpoint: str = "https://fcm.googleapis.com"
    max_concurrency: int = Field(1, ge=1, le=64)
    batch_size: int = Field(500, ge=1, le=500)
    max_attempts: int = Field(5, ge=1, le=50)
    poll_interval_s: float = Field(0.2, gt=0)
    # A claimed row not finished within this time is claimed again (a crashed sender). It
    # must outlast a whole batch: batch_size / 100 SDK calls of up to 30 s each.
    lease_s: float = Field(300, gt=0)
    # Backoff of transient failures (SPEC section 6: base 1 s, cap 300 s); tests and
    # demos shorten them so a retry scenario takes milliseconds, not minutes.
    retry_base_s: float = Field(1.0, gt=0)
    retry_cap_s: float = Field(300.0, gt=0)
    # FCM's Retry-After is honoured up to this, never beyond (SPEC section 10): a hostile
    # or broken answer of `Retry-After: 1000000000` must not stop sending for good.
    max_retry_after_s: float = Field(3600.0, gt=0)
    # How the bytes reach FCM: "aiohttp" (geopush's transport, the SDK still building,
    # authorising and classifying every message) or "sdk" (send_each_async's httpx).
    transport: Literal["aiohttp", "sdk"] = "aiohttp"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("retry_cap_s")
    @classmethod
    def _cap_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        # retry_base_s is declared first, so it is already validated here (absent if bad).
        base = info.data.get("retry_base_s")
        if base is not None and value < base:
            raise ValueError(f"must be at least retry_base_s ({base:g})")
        return value


class PrivacyConfig(_Section):
    ping_retention_days: int = Field(30, ge=1)
    # Consent changes older than this are pruned, except each device's latest, which stays
    # as the record of what it consented to.
    consent_log_retention_days: int = Field(400, ge=30)
    # Suppressed decisions (most of them: cooldowns, caps, quiet hours) are folded into
    # per-day counts after this many days; sends and hold-outs stay for conversion.
    decision_retention_days: int = Field(90, ge=31)
    # Visit events are folded into per-day counts per geofence and type after this many
    # days (the offer preview replays at most this far back).
    event_retention_days: int = Field(90, ge=31)


class AuthConfig(_Section):
    bootstrap_admin_key: str = ""
    # Customer linking (SPEC section 7): the HS256 secret shared with the retailer's login
    # backend, and/or the PEM public key (RSA or EC P-256) that verifies its RS256/ES256 proofs.
    customer_link_secret: str = ""
    customer_link_public_key_file: str = ""
    # A proof links within this many seconds of its `iat` (or of when it is first seen),
    # whatever its `exp` says (SPEC section 10).
    max_proof_lifetime_s: int = Field(900, ge=10, le=86_400)

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("customer_link_secret")
    @classmethod
    def _strong_secret(cls, value: str) -> str:
        # RFC 7518 section 3.2: an HS256 key at least as long as the hash (32 bytes).
        if value and len(value.encode()) < 32:
            raise ValueError("must be at least 32 bytes (RFC 7518 section 3.2)")
        return value

    @field_validator("customer_link_public_key_file")
    @classmethod
    def _readable_public_key(cls, value: str) -> str:
        if value:
            from geopush.identity import load_public_key

            load_public_key(value)  # a ValueError naming what is wrong
        return value


class LimitsConfig(_Section):
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_import_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    device_rate_per_s: float = Field(10.0, gt=0)
    # A request body that sends nothing for this long is cut with 408.
    body_timeout_s: float = Field(30.0, gt=0)
    # After the first body_min_rate_grace_s, a body must arrive at this average rate at
    # least (0: no floor), so a trickle cannot hold a connection or an import slot.
    body_min_rate_bytes_per_s: int = Field(1024, ge=0)
    body_min_rate_grace_s: float = Field(10.0, gt=0)
    # Imports running at once on this machine (every process sharing [data] dir); 429 beyond.
    max_concurrent_imports: int = Field(2, ge=1, le=64)
    # POST /v1/devices per client address and per network (/24, /48), in every process
    # together (SPEC section 10). An address may be a carrier's NAT for many phones: 60 a
    # minute is far above one person's installs and far below a script's. The app key is
    # shared by every install, so a budget per key (0: none, the default) is one that
    # attackers could spend for everyone.
    register_rate_per_min: int = Field(60, ge=1)
    register_network_rate_per_min: int = Field(300, ge=1)
    register_key_rate_per_min: int = Field(0, ge=0)
    # The window the three budgets above are counted in: a minute, as SPEC section 10 says
    # (their names say so). A longer one makes each budget that many per window; the
    # multi-process tests use it so their requests never straddle a window's edge.
    register_window_s: float = Field(60.0, ge=1, le=86_400)
    # Ping batches per client address and process: what many invented devices behind one
    # host can send together, each device having its own device_rate_per_s.
    address_ping_rate_per_s: float = Field(100.0, gt=0)
    # Reverse proxies in front of geopush that append to X-Forwarded-For; 0: the client
    # address is the TCP peer and the header is ignored (a client can write anything in it).
    trusted_proxy_hops: int = Field(0, ge=0, le=10)
    # Categories a device may name in its consent (each at most 100 characters): a retailer
    # has a few dozen; a body of thousands only grows the consent log.
    max_consent_categories: int = Field(100, ge=1, le=10_000)
    # Geofences in all (409 beyond): every process holds them all in memory, and a change
    # applies in about a second at this size on a small machine.
    max_geofences: int = Field(100_000, ge=1, le=1_000_000)
    # Leaderboard reads per device a minute (429 beyond): an app shows it when opened.
    leaderboard_rate_per_min: int = Field(30, ge=1)


class ConsoleConfig(_Section):
    # A slippy-map tile URL such as https://tile.openstreetmap.org/{z}/{x}/{y}.png; empty:
    # the console's map is a plain background with a scale bar (no network needed).
    tile_url: str = ""

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, value: str) -> str:
        if value and not (value.startswith(("http://", "https://"))
                          and all(p in value for p in ("{z}", "{x}", "{y}"))):
            raise ValueError("must be an http(s) URL with {z}, {x} and {y}")
        return value


#: Badge codes of SPEC section 11, in the order they are usually earned.
BADGE_CODES = ("first_visit", "explorer", "regular", "streak_3", "streak_7")


def _name_points(value: Any) -> Any:
    """`{"silver": 500}` as TOML gives it, or `silver=500,gold=2000` as an env var gives it."""
    if not isinstance(value, str):
        return value
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, points = part.partition("=")
        if not sep:
            raise ValueError(f"expected name=points pairs separated by commas, got {part!r}")
        out[name.strip()] = points.strip()
    return out


class LoyaltyConfig(_Section):
    enabled: bool = True
    points_per_checkin: int = Field(10, ge=0, le=1_000_000)
    max_checkins_per_day: int = Field(5, ge=0, le=1000)
    # A dwell earns a check-in only from pings received within this many seconds of when
    # they were taken (a backdated visit still counts as a visit, but earns no points).
    checkin_max_delay_s: int = Field(900, ge=10, le=30 * 86_400)
    # Each process computes a leaderboard at most this often (reads between come from memory).
    leaderboard_refresh_s: float = Field(30.0, ge=0, le=3600)
    points_per_unit: float = Field(1.0, ge=0, le=1_000_000)
    # Bonus points per badge code; a badge not named earns none.
    badge_points: dict[str, int] = Field(default_factory=dict)
    # Level name -> lifetime points from which it applies; one level must start at 0.
    levels: dict[str, int] = Field(
        default_factory=lambda: {"bronze": 0, "silver": 500, "gold": 2000})

    @field_validator("badge_points", "levels", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return _name_points(value)

    @field_validator("badge_points")
    @classmethod
    def _badges(cls, value: dict[str, int]) -> dict[str, int]:
        for code, points in value.items():
            if code not in BADGE_CODES:
                raise ValueError(f"unknown badge {code!r}; badges are {', '.join(BADGE_CODES)}")
            if not 0 <= points <= 1_000_000:
                raise ValueError(f"{code}: points must be between 0 and 1000000")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        if not value or 0 not in value.values():
            raise ValueError("needs a level starting at 0 points")
        if len(set(value.values())) != len(value):
            raise ValueError("two levels start at the same points")
        for name, points in value.items():
            if not name or len(name) > 50 or points < 0:
                raise ValueError(f"{name!r}: a level needs a name and points >= 0")
        return dict(sorted(value.items(), key=lambda item: item[1]))


class AlertsConfig(_Section):
    """Store alerts (SPEC sections 14 and 15): signed JSON POSTs to a store's `alert_url`."""

    # HMAC-SHA256 key of `X-Geopush-Signature`; without it alerts stay queued, unsigned
    # alerts are never sent.
    signing_secret: str = ""
    # Destinations on loopback or a private network are refused (SSRF) unless this is true:
    # tests and demos on one machine need it, production should not.
    allow_private_addresses: bool = False
    batch_size: int = Field(50, ge=1, le=500)
    max_concurrency: int = Field(10, ge=1, le=200)
    max_attempts: int = Field(8, ge=1, le=100)
    retry_base_s: float = Field(1.0, gt=0)
    retry_cap_s: float = Field(300.0, gt=0)
    lease_s: float = Field(30.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0, le=120)
    # Finished alerts (they carry names and comments) are deleted after this many days.
    retention_days: int = Field(30, ge=1)

    @field_validator("signing_secret")
    @classmethod
    def _strong_signing_secret(cls, value: str) -> str:
        if value and len(value.encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        return value

    @field_validator("retry_cap_s")
    @classmethod
    def _alert_cap_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("retry_base_s", 0):
            raise ValueError("must be at least retry_base_s")
        return value


class FeedbackConfig(_Section):
    """Service quality and its recovery (SPEC section 14)."""

    # A feedback request goes out this long after the exit it answers.
    delay_s: int = Field(600, ge=0, le=86_400)
    # At most one feedback request per customer (or device) in this many days.
    min_days_between: int = Field(14, ge=0, le=365)
    # POST /v1/feedback needs a verified visit (a dwell) at the store this recently.
    window_days: int = Field(7, ge=1, le=90)
    # The expectation of a dimension no customer gave one for (scores are 1-5).
    standard: float = Field(4.0, ge=1, le=5)
    # An overall score at or below this opens a case.
    recovery_threshold: int = Field(2, ge=1, le=5)
    # A case is recovered by a verified visit within this many days after it opened.
    recovery_window_days: int = Field(30, ge=1, le=365)
    # A case resolved within this many seconds of opening is within the SLA.
    recovery_sla_s: int = Field(3600, ge=60)
    # Answers lose their comment and who gave them after this many days; scores stay.
    comment_retention_days: int = Field(365, ge=1)


class RecognitionConfig(_Section):
    """SPEC section 15: staff are alerted when a customer at or above this loyalty level
    (or in segment `best`) who consented to recognition enters their store."""

    enabled: bool = True
    min_level: str = Field("gold", min_length=1, max_length=50)


class Config(_Section):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    data: DataConfig = DataConfig()
    geo: GeoConfig = GeoConfig()
    campaigns: CampaignsConfig = CampaignsConfig()
    segments: SegmentsConfig = SegmentsConfig()
    insights: InsightsConfig = InsightsConfig()
    fcm: FcmConfig = FcmConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    console: ConsoleConfig = ConsoleConfig()
    loyalty: LoyaltyConfig = LoyaltyConfig()
    alerts: AlertsConfig = AlertsConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    recognition: RecognitionConfig = RecognitionConfig()

    @model_validator(mode="after")
    def _recognition_level(self) -> Config:
        if self.recognition.min_level not in self.loyalty.levels:
            raise ValueError(f"[recognition] min_level {self.recognition.min_level!r} is not"
                             f" one of [loyalty] levels ({', '.join(self.loyalty.levels)})")
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings for logs and the dashboard, secrets hidden."""
        data = self.model_dump()
        if data["auth"]["bootstrap_admin_key"]:
            data["auth"]["bootstrap_admin_key"] = "***"
        if data["auth"]["customer_link_secret"]:
            data["auth"]["customer_link_secret"] = "***"
        if data["alerts"]["signing_secret"]:
            data["alerts"]["signing_secret"] = "***"
        if "@" in data["database"]["url"]:
            data["database"]["url"] = "***"
        return data


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Config.model_fields.items()
}


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _from_env(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for section, model in SECTIONS.items():
        for key in model.model_fields:
            name = env_name(section, key)
            if name in environ:
                found.setdefault(section, {})[key] = environ[name]
    return found


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if len(loc) >= 2:
            key = f"[{loc[0]}] {'.'.join(loc[1:])} ({env_name(loc[0], loc[1])})"
        else:
            key = f"[{loc[0]}]" if loc else "config"
        lines.append(f"{key}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read the TOML file, apply `GEOPUSH_*` and then explicit overrides (CLI flags), validate.

    A missing default file is fine (built-in defaults); a file named explicitly must exist.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None or "GEOPUSH_CONFIG" in environ
    file_path = Path(
        path if path is not None else environ.get("GEOPUSH_CONFIG", DEFAULT_CONFIG_PATH)
    )
    raw: dict[str, Any] = {}
    if file_path.is_file():
        try:
            raw = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from None
    elif explicit:
        raise ConfigError(f"config file not found: {file_path}")
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{file_path}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{file_path}: [{section}] must be a table")
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in raw.items()}
    for layer in (_from_env(environ), overrides or {}):
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def is_timezone(name: str) -> bool:
    """True for an IANA zone name known to this machine's tz database."""
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True
