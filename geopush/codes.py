"""Every status and reason code named in SPEC, as enums used end to end.

The string values are the contract (API answers, metrics labels, database rows): never rename.
"""

from __future__ import annotations

from enum import StrEnum


class PingRejection(StrEnum):
    """Why a ping was not accepted (SPEC section 2), in the order the checks run."""

    INVALID = "invalid"
    FUTURE = "future"
    TOO_OLD = "too_old"
    MOCKED = "mocked"
    LOW_ACCURACY = "low_accuracy"
    OUT_OF_ORDER = "out_of_order"
    # Beyond SPEC's table: closer in device time to the last accepted ping than
    # `[geo] min_ping_interval_s`. A phone cannot take fixes faster than time passes, so a
    # batch of pings a millisecond apart is a way to fill the pings table, not a trace.
    TOO_FREQUENT = "too_frequent"
    IMPLAUSIBLE_SPEED = "implausible_speed"


class EventType(StrEnum):
    """Visit events (SPEC section 3)."""

    ENTER = "enter"
    DWELL = "dwell"
    EXIT = "exit"


class Trigger(StrEnum):
    """The event type an offer answers to."""

    ENTER = "enter"
    DWELL = "dwell"
    EXIT = "exit"
    # Not a visit: a completed loyalty challenge (SPEC section 11) fires its offer.
    REWARD = "reward"
    # SPEC section 14: a feedback request after an exit that followed a dwell, and the
    # recovery offer a low score runs through the decision.
    FEEDBACK = "feedback"
    RECOVERY = "recovery"


class OfferStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class Outcome(StrEnum):
    """What a decision did with one candidate offer."""

    QUEUED = "queued"
    SUPPRESSED = "suppressed"
    CONTROL = "control"


class SuppressionReason(StrEnum):
    """Why a candidate offer was not sent (SPEC section 4), in the order the checks run."""

    OUTSIDE_SCHEDULE = "outside_schedule"
    STORE_CLOSED = "store_closed"
    SEGMENT_MISMATCH = "segment_mismatch"
    LEVEL_MISMATCH = "level_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    RECENTLY_BOUGHT = "recently_bought"  # SPEC 15
    NO_PUSH_CONSENT = "no_push_consent"
    CATEGORY_OPT_OUT = "category_opt_out"
    NOT_INTERESTED = "not_interested"  # SPEC 15
    STALE_EVENT = "stale_event"
    BUDGET_EXHAUSTED = "budget_exhausted"
    COOLDOWN = "cooldown"
    QUIET_HOURS = "quiet_hours"
    DAILY_CAP = "daily_cap"
    WEEKLY_PREFERENCE = "weekly_preference"  # SPEC 15
    FATIGUE = "fatigue"  # SPEC 15
    NO_TOKEN = "no_token"
    LOWER_PRIORITY = "lower_priority"
    CONTROL_GROUP = "control_group"
    # SPEC section 14, checked right after `cooldown` (for feedback offers only).
    FEEDBACK_RECENT = "feedback_recent"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryReason(StrEnum):
    """Why a delivery failed or was cancelled (SPEC section 6)."""

    UNREGISTERED = "unregistered"
    INVALID_ARGUMENT = "invalid_argument"
    SENDER_ID_MISMATCH = "sender_id_mismatch"
    THIRD_PARTY_AUTH_ERROR = "third_party_auth_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    EXPIRED = "expired"
    LEFT_GEOFENCE = "left_geofence"
    # Beyond SPEC's table: the device had no active token when its turn came, or the
    # device was erased while the delivery was queued.
    NO_TOKEN = "no_token"
    ERASED = "erased"
    # SPEC section 10: consent withdrawn before the delivery could be sent.
    CONSENT_WITHDRAWN = "consent_withdrawn"


class Segment(StrEnum):
    """FRAT segments (SPEC section 5); `unknown` is a device with no customer."""

    NEW = "new"
    GOOD = "good"
    BEST = "best"
    AT_RISK = "at_risk"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    OPS = "ops"
    APP = "app"


class Platform(StrEnum):
    ANDROID = "android"
    IOS = "ios"
    WEB = "web"


class LedgerReason(StrEnum):
    """Why points were credited or debited (SPEC section 11)."""

    CHECKIN = "checkin"
    PURCHASE = "purchase"
    CHALLENGE = "challenge"
    BADGE = "badge"
    ADJUSTMENT = "adjustment"
    REDEMPTION = "redemption"
    MERGE = "merge"


class Badge(StrEnum):
    """Badges, each earned once (SPEC section 11)."""

    FIRST_VISIT = "first_visit"
    EXPLORER = "explorer"
    REGULAR = "regular"
    STREAK_3 = "streak_3"
    STREAK_7 = "streak_7"


class ChallengeKind(StrEnum):
    CHECKINS = "checkins"
    DISTINCT_STORES = "distinct_stores"
    PURCHASES = "purchases"
