"""Config: TOML plus GEOPUSH_* overrides, validated at start with the key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geopush.config import ConfigError, load_config


def test_defaults_match_spec() -> None:
    c = load_config(path=None, environ={})
    assert c.server.port == 8080
    assert (c.geo.future_skew_s, c.geo.max_ping_age_s, c.geo.max_accuracy_m) == (60, 86400, 150)
    assert (c.geo.max_speed_mps, c.geo.default_dwell_s, c.geo.visit_timeout_s) == (70, 300, 3600)
    assert c.geo.exit_buffer_m == 20
    assert (c.campaigns.quiet_hours_start, c.campaigns.quiet_hours_end) == ("21:00", "09:00")
    assert (c.campaigns.daily_cap, c.campaigns.conversion_window_days) == (3, 7)
    assert (c.segments.lookback_days, c.segments.new_days) == (365, 30)
    assert (c.segments.at_risk_days, c.segments.inactive_days) == (60, 180)
    assert c.fcm.endpoint == "https://fcm.googleapis.com"
    assert (c.fcm.batch_size, c.fcm.max_attempts) == (500, 5)
    assert c.privacy.ping_retention_days == 30
    assert c.limits.max_body_bytes == 1024 * 1024
    assert c.limits.max_import_bytes == 100 * 1024 * 1024
    assert c.data.dir == ".geopush" and c.database.url == ""


def test_environment_wins_over_file(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text('[fcm]\nendpoint = "http://file:1"\n[geo]\nexit_buffer_m = 5\n')
    c = load_config(f, environ={"GEOPUSH_FCM_ENDPOINT": "http://127.0.0.1:9/",
                                "GEOPUSH_SERVER_PORT": "9999"})
    assert c.fcm.endpoint == "http://127.0.0.1:9"
    assert c.server.port == 9999
    assert c.geo.exit_buffer_m == 5


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "other.toml"
    f.write_text("[campaigns]\ndaily_cap = 7\n")
    assert load_config(environ={"GEOPUSH_CONFIG": str(f)}).campaigns.daily_cap == 7


@pytest.mark.parametrize(
    ("environ", "text", "named"),
    [
        ({"GEOPUSH_SERVER_PORT": "eighty"}, "", "GEOPUSH_SERVER_PORT"),
        ({"GEOPUSH_GEO_MAX_ACCURACY_M": "-1"}, "", "[geo] max_accuracy_m"),
        ({"GEOPUSH_CAMPAIGNS_QUIET_HOURS_START": "25h"}, "", "quiet_hours_start"),
        ({"GEOPUSH_FCM_ENDPOINT": "ftp://x"}, "", "GEOPUSH_FCM_ENDPOINT"),
        ({}, "[geo]\nmax_accuracy = 3\n", "max_accuracy"),
        ({}, "[nonsense]\nx = 1\n", "[nonsense]"),
        ({}, "[geo\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, environ: dict, text: str, named: str) -> None:
    f = tmp_path / "g.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f, environ=environ)
    assert named in str(info.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_serve_refuses_a_bad_value_naming_the_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "fast"}
    proc = subprocess.run(
        [sys.executable, "-m", "geopush", "serve"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "GEOPUSH_LIMITS_DEVICE_RATE_PER_S" in proc.stderr


def test_workers_zero_means_one_per_core_and_transport_is_checked() -> None:
    c = load_config(path=None, environ={"GEOPUSH_SERVER_WORKERS": "0"})
    assert c.server.workers == 0  # `geopush serve` starts os.cpu_count() workers
    assert load_config(path=None, environ={}).fcm.transport == "aiohttp"
    assert load_config(path=None, environ={"GEOPUSH_FCM_TRANSPORT": "sdk"}).fcm.transport == "sdk"
    with pytest.raises(ConfigError, match="transport"):
        load_config(path=None, environ={"GEOPUSH_FCM_TRANSPORT": "carrier-pigeon"})


def test_deeplink_schemes_from_the_environment_and_unsafe_ones_refused() -> None:
    config = load_config(environ={"GEOPUSH_CAMPAIGNS_DEEPLINK_SCHEMES": "https, Shop"})
    assert config.campaigns.deeplink_schemes == ("https", "shop")
    assert load_config(environ={}).campaigns.deeplink_schemes == ("https",)
    for bad in ("https,javascript", "data", "not a scheme"):
        with pytest.raises(ConfigError, match="GEOPUSH_CAMPAIGNS_DEEPLINK_SCHEMES"):
            load_config(environ={"GEOPUSH_CAMPAIGNS_DEEPLINK_SCHEMES": bad})


@pytest.mark.parametrize("value", ["9:0", "9:00", "+9:00", " 21:00", "24:00"])
def test_quiet_hours_follow_the_one_hhmm_rule_of_offers_and_stores(value: str) -> None:
    # The config once had a looser parser of its own that took "9:0"; an offer's quiet hours
    # and a store's opening hours never did. Now the three share one rule.
    from geopush.campaigns.errors import OfferError
    from geopush.campaigns.opening_hours import parse_hhmm

    with pytest.raises(ConfigError, match=r"quiet_hours_start.*expected HH:MM"):
        load_config(path=None, environ={"GEOPUSH_CAMPAIGNS_QUIET_HOURS_START": value})
    with pytest.raises(OfferError):
        parse_hhmm(value, "quiet_hours.start", allow_24=False)


def test_config_defaults_are_the_domain_defaults() -> None:
    from geopush.campaigns.segments import SegmentRules
    from geopush.geo.filters import PingRules
    from geopush.insights.rules import RuleParams

    c = load_config(path=None, environ={})
    for rules, section in ((PingRules(), c.geo), (SegmentRules(), c.segments),
                           (RuleParams(), c.insights)):
        for name, value in vars(rules).items():
            assert getattr(section, name) == value, name


@pytest.mark.parametrize(("value", "time_ok", "end_ok"), [
    ("09:00", True, True), ("00:00", True, True), ("23:59", True, True),
    ("24:00", False, True), ("9:00", False, False), ("9:0", False, False),
    ("23:60", False, False), ("24:01", False, False), (" 09:00", False, False),
    ("0900", False, False),
])
def test_every_time_of_day_in_a_body_is_read_by_the_one_hhmm_rule(
        value: str, time_ok: bool, end_ok: bool) -> None:
    # A store's hours and a device's quiet hours had patterns of their own beside an offer's
    # daily window; the request models now share the rule the config uses.
    from geopush.api.preferences import QuietHours
    from geopush.campaigns.offer_body import DailyWindowBody
    from geopush.fields import InvalidBody, check_body
    from geopush.places.stores import StorePatch

    def accepted(model: type, body: dict) -> bool:
        try:
            check_body(model, body)
        except InvalidBody:
            return False
        return True

    assert accepted(QuietHours, {"start": value, "end": "07:00"}) is time_ok
    assert accepted(DailyWindowBody, {"start": value, "end": "23:00"}) is time_ok
    assert accepted(DailyWindowBody, {"start": "06:00", "end": value}) is end_ok
    assert accepted(StorePatch, {"opening_hours": {"mon": [["06:00", value]]}}) is end_ok
    try:
        load_config(path=None, environ={"GEOPUSH_CAMPAIGNS_QUIET_HOURS_START": value})
    except ConfigError:
        assert not time_ok
    else:
        assert time_ok
