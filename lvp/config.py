"""All configuration in one typed place.

Every setting is a field of :class:`Settings` with the environment variable that sets it, a
default and a one-line meaning. Command-line flags override the environment (``lvp <cmd>
--help`` lists them). README's settings table is generated from :data:`SETTINGS` and a test keeps
the two in step.

librdkafka pass-through: every environment variable ``KAFKA_<KEY>`` other than
``KAFKA_BOOTSTRAP_SERVERS`` becomes the librdkafka property ``<key>`` lowercased with ``_``
turned into ``.`` (``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``); a double
underscore stands for a literal underscore. :meth:`Settings.from_env` keeps them in
:attr:`Settings.kafka_env_properties`.

Values are checked when a :class:`Settings` is built (:meth:`Settings.from_env`, :meth:`Settings.with_`):
a value of the wrong type or out of range raises :class:`ConfigError` naming the environment
variable, which the ``lvp`` command prints as ``lvp: configuration error: ...`` (exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from lvp import pseudonym


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names its environment variable."""


#: Shortest pseudonym key accepted outside dev mode (bytes): HMAC-SHA256 keys shorter than the
#: hash are weaker than the pseudonyms they make.
MIN_PSEUDONYM_KEY_BYTES = 32
#: The named values of ``LVP_DP_EPSILON`` (ε per public release).
DP_EPSILON_PRESETS: dict[str, float] = {"high_privacy": 0.1, "balanced": 1.0, "high_utility": 10.0}


def _setting(default: Any, env: str, meaning: str, *, secret: bool = False) -> Any:
    # secrets stay out of repr(settings), so out of any log line or traceback that shows it
    return field(
        default=default, repr=not secret, metadata={"env": env, "meaning": meaning, "secret": secret}
    )


@dataclass(frozen=True)
class Settings:
    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = _setting(
        "127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers (host:port,...)."
    )
    topic_good: str = _setting(
        "snowplow-enriched-good", "LVP_TOPIC_GOOD", "Topic for good enriched events (TSV)."
    )
    topic_bad: str = _setting("snowplow-bad-rows", "LVP_TOPIC_BAD", "Topic for Snowplow bad rows.")
    topic_changes: str = _setting(
        "lvp-viewer-changes",
        "LVP_TOPIC_CHANGES",
        "Compacted topic of profile changes that every `lvp viewer` process reads in full.",
    )
    topic_partitions: int = _setting(
        4,
        "LVP_TOPIC_PARTITIONS",
        "Partitions for topics created by `lvp topics create` (`lvp up` gives its embedded broker's "
        "topics 1 unless this is set).",
    )
    topic_replication: int = _setting(
        1, "LVP_TOPIC_REPLICATION", "Replication factor for topics created by `lvp topics create`."
    )
    kafka_msk_iam: bool = _setting(
        False,
        "LVP_KAFKA_MSK_IAM",
        "Amazon MSK IAM auth: SASL/OAUTHBEARER tokens signed with the AWS credentials (lvp.msk).",
    )
    # --- identity and privacy ----------------------------------------------------------------
    pseudonym_key: str = _setting(
        "",
        "LVP_PSEUDONYM_KEY",
        "Secret key for the HMAC-SHA256 pseudonyms of user identifiers, at least 32 bytes. "
        "Required unless LVP_DEV.",
        secret=True,
    )
    pseudonym_cache_size: int = _setting(
        pseudonym.CACHE_SIZE,
        "LVP_PSEUDONYM_CACHE_SIZE",
        "Identifiers whose pseudonym the collector (and a consumer pseudonymizing its input) "
        "remembers (~230 B each): about 3 per concurrent viewer (cookie, domain user id, user "
        "id). The collector's caches of one entry per viewer (scrub targets ~0.9 KB, page URLs "
        "~0.5 KB when they differ per viewer) hold a third as many. A miss costs a few µs: "
        "raise it above ~30,000 viewers.",
    )
    url_keep_params: str = _setting(
        "utm_*",
        "LVP_URL_KEEP_PARAMS",
        "URL query/fragment parameters (page and referrer URLs) kept verbatim, comma-separated, "
        "case-insensitive; `name*` matches a prefix. Values of all others are removed.",
    )
    url_pseudonymize_params: str = _setting(
        "",
        "LVP_URL_PSEUDONYMIZE_PARAMS",
        "URL query/fragment parameters whose (fully URL-decoded) values become keyed pseudonyms, "
        "comma-separated, `name*` matches a prefix.",
    )
    keep_page_title: bool = _setting(
        False,
        "LVP_KEEP_PAGE_TITLE",
        "Keep `page_title` (free text that may name a person); dropped by default.",
    )
    keep_transaction_fields: bool = _setting(
        False,
        "LVP_KEEP_TRANSACTION_FIELDS",
        "Keep the e-commerce `tr_*` / `ti_*` fields (order ids, city, items); dropped by default.",
    )
    dev: bool = _setting(
        False, "LVP_DEV", "Dev mode: generate and keep a pseudonym key and dev token in LVP_STATE_DIR."
    )
    state_dir: str = _setting(".lvp", "LVP_STATE_DIR", "Where dev mode keeps local state.")
    log_format: str = _setting(
        "text",
        "LVP_LOG_FORMAT",
        "Log lines on stderr: text, or json (one object per line: time, level, logger, message, "
        "exception; for CloudWatch Logs Insights).",
    )
    # --- collector ---------------------------------------------------------------------------
    collector_host: str = _setting("127.0.0.1", "LVP_COLLECTOR_HOST", "Collector bind address.")
    collector_port: int = _setting(9090, "LVP_COLLECTOR_PORT", "Collector port.")
    cors_origins: str = _setting(
        "*",
        "LVP_CORS_ORIGINS",
        "Origins allowed to send events to the collector, comma-separated; * for any "
        "(the viewer has LVP_VIEWER_CORS_ORIGINS).",
    )
    schema_dirs: str = _setting(
        "",
        "LVP_SCHEMA_DIRS",
        "Extra Iglu schema directories (os.pathsep-separated), "
        "each <dir>/schemas/<vendor>/<name>/jsonschema/<version>.",
    )
    iglu_resolver: str = _setting(
        "",
        "LVP_IGLU_RESOLVER",
        "Snowplow Iglu resolver configuration (iglu_resolver.json): more repositories (embedded "
        "folders, static HTTP, Iglu Server + apikey) for schemas not bundled or in LVP_SCHEMA_DIRS.",
    )
    iglu_timeout_s: float = _setting(
        1.0,
        "LVP_IGLU_TIMEOUT_S",
        "Timeout (s) of one Iglu repository request, and the longest an event waits for a schema not "
        "yet known (else a bad row; the lookup goes on in the background).",
    )
    max_body_bytes: int = _setting(
        1_000_000, "LVP_MAX_BODY_BYTES", "Largest request body the collector accepts (413 above)."
    )
    max_events_per_request: int = _setting(
        500, "LVP_MAX_EVENTS_PER_REQUEST", "Most events one tp2 POST may carry (413 above)."
    )
    rate_limit_per_ip: float = _setting(
        0.0,
        "LVP_RATE_LIMIT_PER_IP",
        "Requests per second per client IP at the collector (429 above); 0 = off.",
    )
    trusted_proxies: int = _setting(
        -1,
        "LVP_TRUSTED_PROXIES",
        "Where the collector finds the client IP: -1 = the first X-Forwarded-For address (what "
        "Snowplow's collector does; a client can claim any address), 0 = ignore X-Forwarded-For "
        "(the TCP peer), N = the Nth address from the right (N proxies of yours append to it: 1 "
        "behind one load balancer).",
    )
    cookie_name: str = _setting("sp", "LVP_COOKIE_NAME", "Network user id cookie name.")
    cookie_domain: str = _setting("", "LVP_COOKIE_DOMAIN", "Domain attribute of the network user id cookie.")
    produce_timeout_s: float = _setting(
        5.0, "LVP_PRODUCE_TIMEOUT_S", "How long a request waits for Kafka acks before answering 503."
    )
    retry_after_s: int = _setting(5, "LVP_RETRY_AFTER_S", "Retry-After seconds sent with 503/429.")
    request_timeout_s: float = _setting(
        10.0,
        "LVP_REQUEST_TIMEOUT_S",
        "Longest a client may take to send a request's headers, and again its body, "
        "to the collector (408 / closed above); also the deadline for the body of the viewer's "
        "POST /api/login and /api/logout (408).",
    )
    collector_paths: str = _setting(
        "",
        "LVP_COLLECTOR_PATHS",
        "Custom collector paths, as Snowplow's collector `paths`: comma-separated CUSTOM=STANDARD "
        "pairs, CUSTOM a two-segment path, STANDARD /com.snowplowanalytics.snowplow/tp2 or a pixel "
        "path (/i), e.g. /acme/track=/com.snowplowanalytics.snowplow/tp2 for a tracker's custom "
        "postPath; the standard paths keep working.",
    )
    micro_max_events: int = _setting(
        10_000,
        "LVP_MICRO_MAX_EVENTS",
        "Dev mode: how many good and how many bad events the collector keeps in memory for "
        "Snowplow Micro's /micro/* API (the oldest go first).",
    )
    # --- profiles ----------------------------------------------------------------------------
    consumer_group: str = _setting(
        "lvp-profiles", "LVP_CONSUMER_GROUP", "Kafka consumer group of `lvp profiles`."
    )
    table_profiles: str = _setting(
        "viewer_profiles", "LVP_TABLE_PROFILES", "DynamoDB table of current profiles."
    )
    table_history: str = _setting("viewer_history", "LVP_TABLE_HISTORY", "DynamoDB table of status changes.")
    table_viewer_state: str = _setting(
        "viewer_state",
        "LVP_TABLE_VIEWER_STATE",
        "DynamoDB table the `lvp viewer` processes share: the privacy budget of /api/public/stats "
        "and the SSE tickets already used.",
    )
    reorder_window_s: float = _setting(
        10.0,
        "LVP_REORDER_WINDOW_S",
        "How late (s) an event may arrive and still give the same final profile.",
    )
    active_timeout_s: float = _setting(
        75.0,
        "LVP_ACTIVE_TIMEOUT_S",
        "A viewer is active while last seen (collector clock) within this many seconds.",
    )
    retention_days: int = _setting(
        30,
        "LVP_RETENTION_DAYS",
        "TTL of profiles and history items, and retention.ms of LVP_TOPIC_CHANGES (compact,delete).",
    )
    flush_interval_s: float = _setting(
        1.0,
        "LVP_FLUSH_INTERVAL_S",
        "How often dirty profiles are written to DynamoDB (offsets commit after).",
    )
    flush_max_dirty: int = _setting(
        5000, "LVP_FLUSH_MAX_DIRTY", "Flush early once this many profiles are due for a write."
    )
    profile_write_interval_s: float = _setting(
        300.0,
        "LVP_PROFILE_WRITE_INTERVAL_S",
        "A profile is written to DynamoDB at most this long (s) after its first unwritten event "
        "(touches of pings and progress, counters, the ad); a new viewer or a status change is "
        "written within LVP_STATUS_WRITE_DELAY_S, and a viewer quiet for LVP_ACTIVE_TIMEOUT_S then "
        "(docs/lazy-writes.md).",
    )
    status_write_delay_s: float = _setting(
        30.0,
        "LVP_STATUS_WRITE_DELAY_S",
        "A new viewer or a status change is written to DynamoDB (profile and history) this long (s) "
        "after it, with whatever else changed meanwhile: a viewer's status changes within it (an ad "
        "break's start and end, a stall, a seek) cost one profile write. 0: at the next flush. The "
        "live page and the API show them at once; like Kafka Streams' commit.interval.ms "
        "(docs/lazy-writes.md).",
    )
    publish_interval_s: float = _setting(
        0.1,
        "LVP_PUBLISH_INTERVAL_S",
        "How often significant profile changes (status, counters, ads) are published to LVP_TOPIC_CHANGES.",
    )
    touch_interval_s: float = _setting(
        0.25,
        "LVP_TOUCH_INTERVAL_S",
        "How often touches (changes of position, last_seen and play time only) are published, "
        "batched into one message per changes-topic partition (with LVP_PUSH_INTERVAL_S, what a "
        "ping waits before the page shows it).",
    )
    freeze_after_s: float = _setting(
        45.0,
        "LVP_FREEZE_AFTER_S",
        "Memory: a viewer written and then quiet this long (s) keeps only its compressed state "
        "(~0.7 KB, not the ~1.4 KB of a packed viewer) until its next event. Set below the media "
        "ping interval (30 s), playing viewers are compressed between pings too: ~0.9-1.0 KB per "
        "viewer at 2-5 s, for ~1.5-1.7x the CPU per event (bench/freeze_bench.py).",
    )
    active_shards: int = _setting(
        8, "LVP_ACTIVE_SHARDS", "Shards of the sparse active-viewer index (GSI) in the profiles table."
    )
    profiles_metrics_port: int = _setting(
        9091, "LVP_PROFILES_METRICS_PORT", "Prometheus port of `lvp profiles` (0 = off)."
    )
    # --- viewer API ----------------------------------------------------------------------------
    viewer_host: str = _setting("127.0.0.1", "LVP_VIEWER_HOST", "Viewer API/page bind address.")
    viewer_port: int = _setting(8080, "LVP_VIEWER_PORT", "Viewer API/page port.")
    viewer_cors_origins: str = _setting(
        "",
        "LVP_VIEWER_CORS_ORIGINS",
        "Other origins allowed to call the viewer API with credentials (comma-separated; empty = "
        "same-origin only; * = any origin, without credentials) and to sign in / out.",
    )
    viewer_trusted_proxies: int = _setting(
        0,
        "LVP_VIEWER_TRUSTED_PROXIES",
        "Where the viewer finds the client address and scheme (X-Forwarded-For / -Proto), as "
        "LVP_TRUSTED_PROXIES: 0 = the TCP connection, N = the Nth entry from the right (1 behind "
        "one load balancer), -1 = the first entry (spoofable).",
    )
    push_interval_s: float = _setting(
        0.25, "LVP_PUSH_INTERVAL_S", "Shortest interval between SSE delta pushes."
    )
    api_tokens: str = _setting(
        "", "LVP_API_TOKENS", "Bearer tokens accepted by /api/*, comma-separated.", secret=True
    )
    jwt_secret: str = _setting(
        "",
        "LVP_JWT_SECRET",
        "HS256 secret for signed API JWTs and SSE tickets (generated if empty).",
        secret=True,
    )
    sse_max_per_token: int = _setting(
        20, "LVP_SSE_MAX_PER_TOKEN", "Concurrent SSE connections allowed per token."
    )
    metrics_public: bool = _setting(
        False, "LVP_METRICS_PUBLIC", "Serve the viewer's /metrics without a token (default: token required)."
    )
    # --- public aggregates (differential privacy) --------------------------------------------------
    dp_epsilon: str = _setting(
        "balanced",
        "LVP_DP_EPSILON",
        "ε per public release: a number or a preset high_privacy (0.1), balanced (1), high_utility (10).",
    )
    dp_release_interval_s: float = _setting(
        60.0, "LVP_DP_RELEASE_INTERVAL_S", "Seconds a public release is cached before a new one is drawn."
    )
    dp_budget: float = _setting(
        24.0, "LVP_DP_BUDGET", "Total ε that public releases may spend per budget window."
    )
    dp_window_s: float = _setting(3600.0, "LVP_DP_WINDOW_S", "Length of the privacy budget window (s).")
    dp_lifetime_budget: float = _setting(
        240.0,
        "LVP_DP_LIFETIME_BUDGET",
        "Total ε public releases may ever spend (shared by every viewer process, kept in "
        "LVP_TABLE_VIEWER_STATE); once spent, the last release is served unchanged.",
    )
    dp_media_labels: str = _setting(
        "",
        "LVP_DP_MEDIA_LABELS",
        "Public catalogue of media labels released by /api/public/stats, comma-separated; "
        "others count as `other`.",
    )
    # --- AWS -----------------------------------------------------------------------------------
    aws_endpoint_url: str = _setting(
        "", "AWS_ENDPOINT_URL", "DynamoDB endpoint (DynamoDB Local, moto, LocalStack); empty = AWS."
    )
    aws_region: str = _setting("us-east-1", "AWS_REGION", "AWS region.")
    dynamodb_client: str = _setting(
        "http",
        "LVP_DYNAMODB_CLIENT",
        "Client of the profiles consumer's bulk DynamoDB calls (BatchWriteItem, BatchGetItem): http "
        "(our keep-alive SigV4 client, profiles/dynamo_http.py) or botocore (boto3, as every other call).",
    )
    # --- not a setting of its own ----------------------------------------------------------------
    #: The librdkafka properties of the ``KAFKA_*`` environment variables (see the module
    #: docstring), as :meth:`from_env` found them. May hold credentials (``KAFKA_SASL_PASSWORD``):
    #: never shown by ``repr``; not compared.
    kafka_env_properties: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``), then apply ``overrides``.

        ``None`` overrides are ignored, so argparse results can be passed straight in.
        """
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {"kafka_env_properties": kafka_passthrough(env)}
        for f in SETTINGS:
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.metadata["env"], hints[f.name], raw)
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in hints:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = value
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (``None`` ignored), checked like :meth:`from_env`."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # --- derived values --------------------------------------------------------------------------
    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def viewer_cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.viewer_cors_origins.split(",") if o.strip()]

    @property
    def schema_dir_list(self) -> list[Path]:
        return [Path(p) for p in self.schema_dirs.split(os.pathsep) if p]

    @property
    def api_token_list(self) -> list[str]:
        return [t.strip() for t in self.api_tokens.split(",") if t.strip()]

    @property
    def url_keep_param_list(self) -> list[str]:
        return [n.strip() for n in self.url_keep_params.split(",") if n.strip()]

    @property
    def url_pseudonymize_param_list(self) -> list[str]:
        return [n.strip() for n in self.url_pseudonymize_params.split(",") if n.strip()]

    @property
    def dp_epsilon_value(self) -> float:
        """``LVP_DP_EPSILON`` as a number (a preset's value)."""
        return _dp_epsilon(self.dp_epsilon)

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka properties: bootstrap servers, ``KAFKA_*`` pass-through, then ``extra``."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        conf.update(self.kafka_env_properties)
        conf.update(extra)
        return conf

    def require_pseudonym_key(self) -> bytes:
        """The pseudonym key; in dev mode one is generated once and kept in ``state_dir``."""
        if self.pseudonym_key:
            key = self.pseudonym_key.encode()
            if len(key) < MIN_PSEUDONYM_KEY_BYTES and not self.dev:
                raise ConfigError(
                    f"LVP_PSEUDONYM_KEY is {len(key)} bytes: refusing to start with a pseudonym key "
                    f"shorter than {MIN_PSEUDONYM_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"
                )
            return key
        if not self.dev:
            raise ConfigError(
                "LVP_PSEUDONYM_KEY is not set: refusing to start without a pseudonym key "
                "(set LVP_DEV=1 for a generated development key)"
            )
        return dev_secret(self.state_dir, "pseudonym.key").encode()


def dev_secret(state_dir: str, name: str) -> str:
    """A random secret generated once and kept in ``state_dir/name`` (mode 0600)."""
    path = Path(state_dir) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


# --- checks of values (every one names the environment variable) -------------------------------
def _validate(s: Settings) -> None:
    """Raise :class:`ConfigError` for the first setting whose value is out of range."""
    for env, value in (
        ("LVP_FREEZE_AFTER_S", s.freeze_after_s),
        ("LVP_PROFILE_WRITE_INTERVAL_S", s.profile_write_interval_s),
    ):
        if not value > 0:
            raise ConfigError(f"{env} must be > 0 seconds, got {value!r}")
    if not s.status_write_delay_s >= 0:
        raise ConfigError(f"LVP_STATUS_WRITE_DELAY_S must be >= 0 seconds, got {s.status_write_delay_s!r}")
    if s.pseudonym_cache_size < 1:
        raise ConfigError(f"LVP_PSEUDONYM_CACHE_SIZE must be >= 1, got {s.pseudonym_cache_size!r}")
    _dp_epsilon(s.dp_epsilon)
    if s.kafka_msk_iam:
        # MSK IAM signs SASL/OAUTHBEARER tokens for the region (lvp.msk)
        if not s.aws_region:
            raise ConfigError("LVP_KAFKA_MSK_IAM is on but AWS_REGION is empty")
        mechanism = s.kafka_env_properties.get("sasl.mechanism", "OAUTHBEARER")
        if str(mechanism).upper() != "OAUTHBEARER":
            raise ConfigError(f"LVP_KAFKA_MSK_IAM needs KAFKA_SASL_MECHANISM=OAUTHBEARER, not {mechanism!r}")


def _dp_epsilon(value: str | float) -> float:
    """A preset name or a positive number (``LVP_DP_EPSILON``)."""
    if isinstance(value, str) and value in DP_EPSILON_PRESETS:
        return DP_EPSILON_PRESETS[value]
    try:
        eps = float(value)
    except ValueError:
        raise ConfigError(
            f"LVP_DP_EPSILON: ε must be a number or one of {', '.join(DP_EPSILON_PRESETS)}; got {value!r}"
        ) from None
    if not eps > 0:
        raise ConfigError(f"LVP_DP_EPSILON: ε must be positive; got {eps}")
    return eps


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(env_name: str, type_: Any, raw: str) -> Any:
    try:
        if type_ is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if type_ is int:
            return int(raw)
        if type_ is float:
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{env_name}={raw!r} is not a valid {type_.__name__}") from None


def kafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    """``KAFKA_SASL_MECHANISM=OAUTHBEARER`` -> ``{"sasl.mechanism": "OAUTHBEARER"}``."""
    out: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            continue
        key = name[len("KAFKA_") :].lower().replace("__", "\0").replace("_", ".").replace("\0", "_")
        if key:
            out[key] = value
    return out


#: The settings: the fields of :class:`Settings` set by an environment variable (all but
#: ``kafka_env_properties``), with their ``env``, ``meaning`` and ``secret`` metadata.
SETTINGS: tuple[dataclasses.Field[Any], ...] = tuple(
    f for f in dataclasses.fields(Settings) if "env" in f.metadata
)


def settings_table() -> str:
    """The README settings table (markdown)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in SETTINGS:
        default = f.default
        shown = (
            "(empty)"
            if default == ""
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
        rows.append(f"| `{f.metadata['env']}` | `{shown}` | {f.metadata['meaning']} |")
    rows.append(
        "| `KAFKA_<KEY>` | | Any other librdkafka property, e.g. `KAFKA_SECURITY_PROTOCOL=SASL_SSL` → "
        "`security.protocol` (`__` = literal `_`). |"
    )
    return "\n".join(rows)
