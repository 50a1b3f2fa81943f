"""One settings object, read from the environment (prefix NOTIFIER_) and validated at start.

DATABASE_URL and SCHEMA_REGISTRY_URL are also read without the prefix, as most tools name them.
`notifier config` prints the resolved values with secrets masked.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
# The providers each channel can be sent through, by name (adapters/providers.py builds them).
KNOWN_PROVIDERS: dict[str, tuple[str, ...]] = {
    "EMAIL": ("smtp", "sendgrid"),
    "SMS": ("twilio", "vonage"),
    "VOICE": ("twilio", "vonage"),
    "PUSH": ("fcm",),
    "SLACK": ("slack",),
    "TEAMS": ("teams",),
    "WEBHOOK": ("webhook",),
}


def assignments(text: str, separator: str, form: str) -> dict[str, str]:
    """NAME=value items separated by `separator` (blanks ignored), names upper-cased;
    ValueError naming the expected `form` for an item without '='."""
    found: dict[str, str] = {}
    for item in text.replace(" ", "").split(separator):
        if not item:
            continue
        name, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"{item!r} is not {form}")
        found[name.upper()] = value
    return found


class Settings(BaseSettings):
    """Every setting of the notifier; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_", frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    topic_prefix: str = Field("", description="Prefix put before every topic name.")
    topic_partitions: int = Field(6, ge=1, description="Partitions of each topic at creation.")
    replication_factor: int = Field(
        0, ge=0, description="Replicas of each topic; 0 takes min(3, brokers in the cluster)."
    )
    # NoDecode: read "30,60" as text, not JSON
    retry_delays_s: Annotated[tuple[int, ...], NoDecode] = Field(
        (30, 60, 120, 240), description="Backoff schedule in seconds, one delay topic each."
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "NOTIFIER_DATABASE_URL"),
        description="PostgreSQL URL; unset uses the embedded server started by `make up`.",
    )
    schema_registry_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "NOTIFIER_SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible Schema Registry; unset derives ids from schemas/.",
    )
    stack: str = Field("dev", description="Name of the local stack (dev, test, ...).")
    state_dir: Path = Field(
        REPO_ROOT / ".stack", description="Where the local stack keeps data, logs and URLs."
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    projection_enabled: bool = Field(
        True,
        description="Run the NotificationLog projection in the worker, and with it tier "
        "escalation: at least one worker of a deployment must run it.",
    )
    projection_fetch_wait_ms: int = Field(
        50,
        ge=0,
        le=1000,
        description="How long the projection lets the broker gather a fetch before it "
        "answers (ms): fewer, larger batches per transaction at a bounded delay to the row.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="The worker's event loop: uvloop (faster), or asyncio's own."
    )

    # --- delivery -------------------------------------------------------------------
    channel_concurrency: int = Field(10, ge=1, description="Sends in flight per channel.")
    batch_size: int = Field(200, ge=1, description="Most commands a channel agent takes at once.")
    producer_linger_ms: int = Field(
        5, ge=0, description="How long the worker's producer waits to fill a batch (ms)."
    )
    send_timeout_s: float = Field(10.0, gt=0, description="Timeout of one provider request.")
    send_timeouts: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="Per-channel timeouts of a provider request in seconds, e.g. "
        "VOICE=30,SMS=5; a channel not named has send_timeout_s.",
    )
    retry_schedules: Annotated[dict[str, tuple[int, ...]], NoDecode] = Field(
        default_factory=dict,
        description="Per-priority backoff schedules (INFO, LOW, MEDIUM, HIGH, CRITICAL), e.g. "
        "CRITICAL=10,20,40,80,160;LOW=300; a priority not named has retry_delays_s. Each delay "
        "is a delay topic of its own.",
    )
    rate_limit_per_min: int = Field(100, ge=1, description="Default sends per minute per provider.")
    rate_limits: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, description="Per-provider sends per minute, e.g. twilio=60,fcm=6000."
    )
    session_timeout_s: float = Field(
        30.0,
        ge=6,
        description="Consumer group session timeout: how soon a dead worker's "
        "partitions move to the others.",
    )
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open a circuit.")
    breaker_cooldown_s: int = Field(30, ge=1, description="Seconds a circuit stays open.")
    ops_user_ids: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Who is paged when email and SMS both failed for someone (comma list)."
    )
    email_provider: str = Field("smtp", description="Email adapter: smtp or sendgrid.")
    providers: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        description="Providers of a channel in failover order, e.g. EMAIL=smtp,sendgrid;"
        "SMS=twilio; a channel not named has its one provider (email: email_provider).",
    )
    email_from: str = Field("notifier@example.com", description="Sender address of emails.")
    callback_base_url: str = Field(
        "", description="Public URL of the webhook bridge, put in provider status callbacks."
    )

    # --- providers (base URLs point at the real services; the sandbox overrides them) --
    smtp_host: str = Field("127.0.0.1", description="SMTP server.")
    smtp_port: int = Field(25, description="SMTP port.")
    smtp_username: str = Field("", description="SMTP user; empty skips AUTH.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    sendgrid_base_url: str = Field("https://api.sendgrid.com", description="SendGrid API.")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key.")
    twilio_base_url: str = Field("https://api.twilio.com", description="Twilio REST API.")
    twilio_account_sid: str = Field("", description="Twilio Account SID (AC...).")
    twilio_auth_token: SecretStr | None = Field(None, description="Twilio auth token.")
    twilio_from: str = Field("", description="Twilio sender number, E.164.")
    vonage_sms_base_url: str = Field("https://rest.nexmo.com", description="Vonage SMS API.")
    vonage_voice_base_url: str = Field("https://api.nexmo.com", description="Vonage Voice API.")
    vonage_api_key: str = Field("", description="Vonage API key (SMS).")
    vonage_api_secret: SecretStr | None = Field(None, description="Vonage API secret (SMS).")
    vonage_from: str = Field(
        "", description="Vonage sender number, E.164 (sent without the '+', as Vonage wants)."
    )
    vonage_application_id: str = Field(
        "", description="Vonage application id (voice): the JWT's application_id claim."
    )
    vonage_private_key_file: Path | None = Field(
        None,
        description="The Vonage application's private key (PEM), which signs each voice "
        "call's JWT (RS256).",
    )
    fcm_base_url: str = Field("https://fcm.googleapis.com", description="FCM HTTP v1 API.")
    fcm_project_id: str = Field("", description="Firebase project id.")
    fcm_access_token: SecretStr | None = Field(
        None,
        description="A fixed OAuth2 bearer token for FCM (tests, the sandbox); in production "
        "use a service account file, whose tokens are minted and refreshed.",
    )
    fcm_service_account_file: Path | None = Field(
        None,
        validation_alias=AliasChoices(
            "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE", "GOOGLE_APPLICATION_CREDENTIALS"
        ),
        description="Google service-account key (JSON) FCM's access tokens are minted from, "
        "each refreshed before it expires; takes precedence over NOTIFIER_FCM_ACCESS_TOKEN.",
    )
    slack_base_url: str = Field("https://slack.com/api", description="Slack Web API.")
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token (xoxb-...).")
    webhook_signing_secret: SecretStr | None = Field(
        None, description="Default HMAC-SHA256 secret for generic webhooks and their receipts."
    )

    # --- webhook bridge (inbound callbacks and acknowledgements) ------------------------
    bridge_host: str = Field("127.0.0.1", description="Address the webhook bridge listens on.")
    bridge_port: int = Field(8090, description="Port of the webhook bridge.")
    metrics_host: str = Field(
        "127.0.0.1", description="Address of the worker's /metrics, /healthz and /readyz."
    )
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of the worker's metrics endpoint; 0 disables it."
    )
    twilio_auth_token_previous: SecretStr | None = Field(
        None, description="The Twilio auth token being rotated out; accepted until unset."
    )
    slack_signing_secret: SecretStr | None = Field(
        None, description="Slack app signing secret (interactivity requests)."
    )
    sendgrid_webhook_public_key: str = Field(
        "", description="SendGrid signed event webhook verification key (base64 DER or PEM)."
    )
    request_max_age_s: int = Field(
        300, ge=1, description="Signed requests older than this are refused (Slack, SendGrid)."
    )
    magic_link_ttl_s: int = Field(
        86400,
        ge=60,
        description="How long an acknowledge/resolve link in an email or Teams card is valid.",
    )
    sms_replies: bool = Field(
        False,
        description="Alert SMS end with 'Reply ACK <code> to acknowledge' when a bridge is "
        "deployed (callback_base_url). Off by default: turn on once the number's "
        "incoming-message webhook points at the bridge's /twilio/sms, or replies go nowhere.",
    )
    receipt_deadline_s: float = Field(
        120.0, gt=0, description="A sent alert not confirmed delivered by then counts as failed."
    )
    receipt_priorities: Annotated[tuple[str, ...], NoDecode] = Field(
        ("CRITICAL",),
        description="Priorities whose alerts need a delivery receipt (comma list of INFO, LOW, "
        "MEDIUM, HIGH, CRITICAL; any case).",
    )
    repeat_priorities: Annotated[tuple[str, ...], NoDecode] = Field(
        ("CRITICAL",),
        description="Priorities whose last tier repeats until acknowledged (comma list of "
        "INFO, LOW, MEDIUM, HIGH, CRITICAL; any case).",
    )
    repeat_interval_s: float = Field(
        300.0, gt=0, description="Time between repeats of the last tier (Grafana OnCall: 5 min)."
    )
    repeat_max: int = Field(3, ge=0, description="Most repeats of the last tier; 0 turns it off.")
    throttles: str = Field(
        "SMS=5/900,20/3600;VOICE=3/900",
        description="Most messages per person and channel in layered windows, limit/seconds "
        "(CHANNEL=5/900,20/3600;...); over them messages are held and bundled. Empty: none.",
    )

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _split_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = (item.split("=", 1) for item in value.replace(" ", "").split(",") if item)
            return {name: int(rate) for name, rate in pairs}
        return value

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = assignments(value, ";", "CHANNEL=provider,...; e.g. EMAIL=smtp,sendgrid")
        return {
            channel: tuple(n.lower() for n in names.split(",") if n)
            for channel, names in found.items()
        }

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for channel, names in value.items():
            if channel not in KNOWN_PROVIDERS:
                raise ValueError(
                    f"unknown channel {channel!r}; channels: {', '.join(KNOWN_PROVIDERS)}"
                )
            known = KNOWN_PROVIDERS[channel]
            if not names:
                raise ValueError(f"{channel} names no provider; known: {', '.join(known)}")
            for name in names:
                if name not in known:
                    raise ValueError(
                        f"unknown {channel} provider {name!r}; known: {', '.join(known)}"
                    )
            if len(set(names)) != len(names):
                raise ValueError(f"{channel} names a provider twice: {','.join(names)}")
        return value

    @model_validator(mode="after")
    def _vonage_configured(self) -> Settings:
        # Vonage is only ever a provider NOTIFIER_PROVIDERS names: named without its settings
        # it could never send, so the worker does not start rather than fail every message
        needs = {
            "SMS": ("vonage_api_key", "vonage_api_secret", "vonage_from"),
            "VOICE": ("vonage_application_id", "vonage_private_key_file", "vonage_from"),
        }
        unset = [
            f"NOTIFIER_{name.upper()}"
            for channel, names in needs.items()
            if "vonage" in self.providers.get(channel, ())
            for name in names
            if not getattr(self, name)
        ]
        if unset:
            channels = ",".join(c for c in needs if "vonage" in self.providers.get(c, ()))
            names = list(dict.fromkeys(unset))
            raise ValueError(
                f"NOTIFIER_PROVIDERS names vonage for {channels}, but {', '.join(names)} "
                f"{'is' if len(names) == 1 else 'are'} not set"
            )
        return self

    @field_validator("email_provider")
    @classmethod
    def _known_email_provider(cls, value: str) -> str:
        if value not in KNOWN_PROVIDERS["EMAIL"]:
            known = ", ".join(KNOWN_PROVIDERS["EMAIL"])
            raise ValueError(f"unknown email provider {value!r}; known: {known}")
        return value

    def providers_of(self, channel: str) -> tuple[str, ...]:
        """The providers of `channel` (EMAIL, SMS, ...) in failover order."""
        if channel in self.providers:
            return self.providers[channel]
        return (self.email_provider,) if channel == "EMAIL" else KNOWN_PROVIDERS[channel][:1]

    def rate_limit(self, provider: str) -> int:
        """Sends per minute allowed to `provider`."""
        return self.rate_limits.get(provider, self.rate_limit_per_min)

    def secret(self, ref: str) -> str | None:
        """The secret a user profile names by reference: env var NOTIFIER_SECRET_<REF>."""
        import os

        return os.environ.get(f"NOTIFIER_SECRET_{ref.upper()}")

    @field_validator("send_timeouts", mode="before")
    @classmethod
    def _split_timeouts(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = assignments(value.replace(";", ","), ",", "CHANNEL=seconds; e.g. VOICE=30,SMS=5")
        return {channel: float(seconds) for channel, seconds in found.items()}

    @field_validator("send_timeouts")
    @classmethod
    def _known_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        for channel, seconds in value.items():
            if channel not in KNOWN_PROVIDERS:
                raise ValueError(
                    f"unknown channel {channel!r}; channels: {', '.join(KNOWN_PROVIDERS)}"
                )
            if seconds <= 0:
                raise ValueError(f"the {channel} timeout must be positive, not {seconds:g}")
        return value

    @field_validator("retry_schedules", mode="before")
    @classmethod
    def _split_schedules(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = assignments(value, ";", "PRIORITY=delay,...; e.g. CRITICAL=10,20,40;LOW=300")
        return {p: tuple(int(d) for d in delays.split(",") if d) for p, delays in found.items()}

    @field_validator("retry_schedules")
    @classmethod
    def _known_schedules(cls, value: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        from notifier.contracts.records import Priority

        known = [p.value for p in Priority]
        for priority, delays in value.items():
            if priority not in known:
                raise ValueError(f"unknown priority {priority!r}; priorities: {', '.join(known)}")
            if any(d <= 0 for d in delays):
                raise ValueError(f"the {priority} schedule needs positive delays, e.g. 30,60")
        return value

    def send_timeout(self, channel: str) -> float:
        """Seconds a request to a provider of `channel` may take."""
        return self.send_timeouts.get(channel, self.send_timeout_s)

    def retry_delays(self, priority: str) -> tuple[int, ...]:
        """The backoff schedule of commands of `priority` (empty: never retried)."""
        return self.retry_schedules.get(priority, self.retry_delays_s)

    @property
    def every_retry_delay(self) -> tuple[int, ...]:
        """Every delay of every schedule, once each: the delay topics there are."""
        return tuple(
            sorted({*self.retry_delays_s, *(d for s in self.retry_schedules.values() for d in s)})
        )

    @field_validator("ops_user_ids", "receipt_priorities", "repeat_priorities", mode="before")
    @classmethod
    def _split_users(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v for v in value.replace(" ", "").split(",") if v)
        return value

    @field_validator("receipt_priorities", "repeat_priorities")
    @classmethod
    def _known_priorities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # a misspelt priority would silently turn receipts or repeats off for it
        from notifier.contracts.records import Priority

        known = [p.value for p in Priority]
        named = tuple(p.upper() for p in value)
        unknown = [p for p in named if p not in known]
        if unknown:
            raise ValueError(f"unknown priority {unknown[0]!r}; priorities: {', '.join(known)}")
        return named

    @field_validator("retry_delays_s")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("needs one or more positive delays, e.g. 30,60,120,240")
        return value

    @field_validator("throttles")
    @classmethod
    def _valid_throttles(cls, value: str) -> str:
        from notifier.domain.throttle import parse_throttles

        parse_throttles(value)  # ValueError says which part is wrong
        return value

    @property
    def stack_dir(self) -> Path:
        """State folder of the local stack this process belongs to."""
        return self.state_dir / self.stack

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets and URL passwords masked."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                text = mask_url(secret) if "://" in secret else "***"
            elif isinstance(value, tuple):
                text = ",".join(str(v) for v in value)
            elif isinstance(value, dict) and all(isinstance(v, tuple) for v in value.values()):
                text = ";".join(f"{k}={','.join(map(str, v))}" for k, v in value.items())
            elif isinstance(value, dict):
                text = ",".join(f"{k}={v}" for k, v in value.items())
            else:
                text = "" if value is None else str(value)
            shown[name] = text
        return shown


def mask_url(url: str) -> str:
    """Hide the password of a URL (scheme://user:secret@host -> scheme://user:***@host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon and password else colon}@{host}"


@cache
def get_settings() -> Settings:
    """The settings of this process, built once."""
    return Settings()
