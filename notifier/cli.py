"""`notifier`: the command line of the notification engine. Every command has --help."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from notifier.contracts.errors import ContractError
from notifier.contracts.records import (
    Channel,
    ChannelPreference,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentOpened,
    IncidentResolved,
    Priority,
    Record,
    SlackConnection,
    TeamsConnection,
    UserProfile,
    WebhookAuth,
    WebhookEndpoint,
)
from notifier.settings import Settings, get_settings

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)
topics_app = typer.Typer(help="Create and list the notifier's Kafka topics.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL read model.", no_args_is_help=True)
projection_app = typer.Typer(help="The NotificationLog projection.", no_args_is_help=True)
schemas_app = typer.Typer(help="The Avro schemas in the Schema Registry.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")
app.add_typer(projection_app, name="projection")

# piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

IncidentEvent = IncidentOpened | IncidentEscalated | IncidentAcknowledged | IncidentResolved
ALERT_TYPES: dict[str, type[IncidentOpened | IncidentEscalated]] = {
    "opened": IncidentOpened,
    "escalated": IncidentEscalated,
}
NOTICE_TYPES: dict[str, type[IncidentAcknowledged | IncidentResolved]] = {
    "acknowledged": IncidentAcknowledged,
    "resolved": IncidentResolved,
}
INCIDENT_TYPES: dict[str, type[IncidentEvent]] = {**ALERT_TYPES, **NOTICE_TYPES}


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` as an error and return the Exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _now() -> datetime:
    return datetime.now(UTC)


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError names the bad variable
        raise fail(f"invalid settings: {exc}") from exc


def _codec(settings: Settings) -> Any:
    from notifier.contracts.factory import RegistryNotConfiguredError, build_codec
    from notifier.contracts.registry import RegistryUnavailableError

    try:
        return build_codec(settings)
    except (RegistryNotConfiguredError, RegistryUnavailableError) as exc:
        raise fail(str(exc)) from exc


def _setup_errors() -> tuple[type[Exception], ...]:
    """What a long-running process raises at start when the stack is not set up or not
    there (imported on use: the CLI starts without them)."""
    from notifier.contracts.factory import RegistryNotConfiguredError
    from notifier.contracts.registry import RegistryUnavailableError
    from projections.database import DatabaseNotConfiguredError

    return (RegistryNotConfiguredError, RegistryUnavailableError, DatabaseNotConfiguredError)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from exc


def _publish(settings: Settings, topic: str, items: list[tuple[str, Record]]) -> None:
    from notifier.kafka_io import Publisher, PublishError

    publisher = Publisher(settings, _codec(settings))
    try:
        for key, record in items:
            publisher.publish(topic, key, record)
        publisher.flush()
    except (PublishError, ContractError) as exc:
        raise fail(str(exc)) from exc


@app.command()
def config() -> None:
    """Print the resolved settings, secrets masked."""
    for key, value in _settings().masked().items():
        out.print(f"{key} = {value}", highlight=False)


def _utc_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time from the command line; one without an offset is UTC."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail(f"{option}: {text!r} is not an ISO 8601 time, e.g. 2026-12-03T11:58Z") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@app.command("publish-incident")
def publish_incident(
    file: Annotated[
        Path | None,
        typer.Option(help="JSON file: one incident event or a list; each may name its 'type'."),
    ] = None,
    type_: Annotated[
        str, typer.Option("--type", help="opened, escalated, acknowledged or resolved.")
    ] = "opened",
    incident_id: Annotated[
        str | None, typer.Option(help="Incident id (default: new UUID; overrides the file's).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="One-line summary.")] = None,
    priority: Annotated[Priority, typer.Option(help="Incident priority.")] = Priority.HIGH,
    user: Annotated[list[str] | None, typer.Option(help="User to notify (repeat).")] = None,
    level: Annotated[int, typer.Option(help="Escalation level.")] = 1,
    description: Annotated[str | None, typer.Option(help="Longer text.")] = None,
    service: Annotated[str | None, typer.Option(help="Affected service.")] = None,
    url: Annotated[str | None, typer.Option(help="Link to the incident.")] = None,
    team: Annotated[str | None, typer.Option(help="Team that owns the incident.")] = None,
    alert_count: Annotated[
        int | None, typer.Option(min=0, help="Alerts the incident has grouped.")
    ] = None,
    triggered_at: Annotated[
        str | None,
        typer.Option(help="When it was first triggered, ISO 8601 (no offset: UTC)."),
    ] = None,
    dashboard_url: Annotated[str | None, typer.Option(help="Link to its dashboard.")] = None,
    channel: Annotated[
        list[Channel] | None, typer.Option(help="Only these channels (repeat).")
    ] = None,
    skip_tiers: Annotated[bool, typer.Option(help="Send every tier at once.")] = False,
    by: Annotated[str | None, typer.Option(help="Who acknowledged or resolved.")] = None,
) -> None:
    """Publish incident events to the incidents topic, Avro-encoded."""
    from notifier.contracts.convert import from_json

    settings = _settings()
    events: list[IncidentEvent] = []
    if file is not None:
        data = _load_json(file)
        for item in data if isinstance(data, list) else [data]:
            kind = str(item.pop("type", type_)) if isinstance(item, dict) else type_
            cls = INCIDENT_TYPES.get(kind)
            if cls is None:
                raise fail(f"unknown incident type {kind!r}: one of {', '.join(INCIDENT_TYPES)}")
            if incident_id is not None:
                item["incident_id"] = incident_id
            item.setdefault("event_id", str(uuid.uuid4()))
            item.setdefault("occurred_at", _now().isoformat())
            try:
                events.append(from_json(cls, item))
            except ContractError as exc:
                raise fail(f"{file}: {exc.reason}") from exc
    else:
        if type_ not in INCIDENT_TYPES:
            raise fail(f"unknown incident type {type_!r}: one of {', '.join(INCIDENT_TYPES)}")
        common: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": _now(),
            "incident_id": incident_id or str(uuid.uuid4()),
        }
        if type_ in ALERT_TYPES:
            if not title or not user:
                raise fail("--title and at least one --user are needed (or --file)")
            events.append(
                ALERT_TYPES[type_](
                    **common,
                    title=title,
                    priority=priority,
                    escalation_level=level,
                    user_ids=list(user),
                    description=description,
                    service=service,
                    url=url,
                    channels=list(channel) if channel else None,
                    skip_tiers=skip_tiers,
                    team_name=team,
                    alert_count=alert_count,
                    triggered_at=_utc_time(triggered_at, "--triggered-at"),
                    dashboard_url=dashboard_url,
                )
            )
        else:
            if incident_id is None:
                raise fail("--incident-id is needed to acknowledge or resolve")
            events.append(NOTICE_TYPES[type_](**common, by_user_id=by, via="cli"))
    _publish(settings, "incidents", [(e.incident_id, e) for e in events])
    for event in events:
        out.print(f"published {type(event).__name__} {event.incident_id}", highlight=False)


@app.command("upsert-user")
def upsert_user(
    file: Annotated[
        Path | None, typer.Option(help="JSON file: one user profile or a list.")
    ] = None,
    user_id: Annotated[str | None, typer.Option(help="User id.")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone in E.164, e.g. +14155550100.")] = None,
    push_token: Annotated[list[str] | None, typer.Option(help="FCM token (repeat).")] = None,
    slack_user: Annotated[str | None, typer.Option(help="Slack member id.")] = None,
    teams_webhook: Annotated[str | None, typer.Option(help="Teams incoming webhook URL.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Generic webhook URL.")] = None,
    channels: Annotated[
        str, typer.Option(help="Enabled channels in order, comma separated.")
    ] = "EMAIL,SLACK,PUSH,TEAMS,WEBHOOK,SMS,VOICE",
) -> None:
    """Write user profiles (contacts and channel preferences) to the compacted users topic."""
    from notifier.contracts.convert import from_json

    settings = _settings()
    profiles: list[UserProfile] = []
    if file is not None:
        data = _load_json(file)
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                item.setdefault("updated_at", _now().isoformat())
            try:
                profiles.append(from_json(UserProfile, item))
            except ContractError as exc:
                raise fail(f"{file}: {exc.reason}") from exc
    else:
        if not user_id or not name:
            raise fail("--user-id and --name are needed (or --file)")
        try:
            order = [Channel(c.strip().upper()) for c in channels.split(",") if c.strip()]
        except ValueError as exc:
            raise fail(f"--channels: {exc}") from exc
        profiles.append(
            UserProfile(
                user_id=user_id,
                name=name,
                updated_at=_now(),
                email=email,
                phone=phone,
                push_tokens=list(push_token or []),
                slack=SlackConnection(slack_user_id=slack_user, active=True)
                if slack_user
                else None,
                teams=TeamsConnection(webhook_url=teams_webhook, active=True)
                if teams_webhook
                else None,
                webhook=WebhookEndpoint(url=webhook_url, auth=WebhookAuth.NONE)
                if webhook_url
                else None,
                preferences=[
                    ChannelPreference(channel=c, enabled=True, order=i)
                    for i, c in enumerate(order, start=1)
                ],
            )
        )
    _publish(settings, "users", [(p.user_id, p) for p in profiles])
    for profile in profiles:
        out.print(f"upserted user {profile.user_id}", highlight=False)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Logical topic name, e.g. incidents.")],
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = False,
    key: Annotated[str | None, typer.Option(help="Only messages with this key.")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    timeout: Annotated[float, typer.Option(help="Stop after this many idle seconds.")] = 10.0,
) -> None:
    """Print a topic's messages, decoded, as JSON lines."""
    from notifier.kafka_io import PublishError, read_topic

    settings = _settings()
    codec = _codec(settings)
    shown = 0
    try:
        for k, value, partition, offset in read_topic(
            settings, topic, from_beginning=from_beginning, timeout_s=timeout
        ):
            if key is not None and (k or b"").decode(errors="replace") != key:
                continue
            try:
                name, body = codec.decode_dict(value)
                line = {
                    "partition": partition,
                    "offset": offset,
                    "type": name.split(".")[-1],
                    "value": body,
                }
            except ContractError as exc:
                line = {"partition": partition, "offset": offset, "error": exc.reason}
            out.print_json(json.dumps(line, default=_json_default))
            shown += 1
            if count is not None and shown >= count:
                break
    except (PublishError, KeyError) as exc:
        raise fail(f"cannot read topic {topic}: {exc}") from exc
    if count is not None and shown < count:
        raise fail(f"saw {shown} of {count} message(s) within {timeout:.0f} idle seconds")


@topics_app.command("create")
def topics_create(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kafka.")] = 30.0,
) -> None:
    """Create every declared topic and set its configs; safe to run again."""
    from confluent_kafka import KafkaException

    from notifier.topics import ensure_topics

    settings = _settings()
    try:
        actions = ensure_topics(settings.kafka_bootstrap, settings, timeout_s=timeout)
    except KafkaException as exc:
        raise fail(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    for action in actions:
        out.print(f"{action.action:<9} {action.topic}  {action.detail}", highlight=False)
    created = sum(a.action == "created" for a in actions)
    out.print(f"{len(actions)} topics: {created} created", highlight=False)


@topics_app.command("list")
def topics_list() -> None:
    """Show every declared topic with its partitions, replication and configs."""
    from confluent_kafka import KafkaException

    from notifier.topics import declared_topics, describe_topics, full_name

    settings = _settings()
    specs = declared_topics(settings)
    try:
        described = describe_topics(
            settings.kafka_bootstrap, [full_name(settings, s.name) for s in specs]
        )
    except KafkaException as exc:
        raise fail(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    table = Table("topic", "key", "records", "partitions", "replicas", "cleanup", "retention.ms")
    for spec in specs:
        info = described.get(full_name(settings, spec.name))
        table.add_row(
            full_name(settings, spec.name),
            spec.key,
            ", ".join(r.__name__ for r in spec.records),
            info["partitions"] if info else "[red]missing[/red]",
            info["replication"] if info else "-",
            info.get("cleanup.policy", "delete") if info else "-",
            info.get("retention.ms", "default") if info else "-",
        )
    out.print(table)


@schemas_app.command("register")
def schemas_register() -> None:
    """Register every schema under its topic's subjects with BACKWARD compatibility; safe to
    run again."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from notifier.contracts.factory import RegistryNotConfiguredError, registry_url
    from notifier.contracts.registry import register_subjects
    from notifier.topics import subjects

    settings = _settings()
    try:
        url = registry_url(settings)
        done = register_subjects(url, subjects(settings))
    except RegistryNotConfiguredError as exc:
        raise fail(str(exc)) from exc
    except SchemaRegistryError as exc:
        raise fail(
            f"schema registry refused: {exc.error_message} (HTTP {exc.http_status_code})"
        ) from exc
    except Exception as exc:  # unreachable registry: connection errors of many kinds
        raise fail(f"schema registry {settings.schema_registry_url or ''}: {exc}") from exc
    for reg in done:
        if reg.new:
            out.print(
                f"registered {reg.subject} (id {reg.schema_id}, version {reg.version})",
                highlight=False,
            )
    out.print(
        f"{len(done)} subjects: {sum(r.new for r in done)} registered, "
        f"{sum(not r.new for r in done)} unchanged",
        highlight=False,
    )


@projection_app.command("rebuild")
def projection_rebuild(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before dropping.")] = False,
) -> None:
    """Drop the NotificationLog and rebuild it from delivery.events and provider.callbacks
    (stop the workers first)."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from projections.database import DatabaseNotConfiguredError, database_url
    from projections.rebuild import rebuild

    settings = _settings()
    try:
        url = database_url(settings)
    except DatabaseNotConfiguredError as exc:
        raise fail(str(exc)) from exc
    if not yes and not typer.confirm("Drop notification_log and rebuild it from the topics?"):
        raise typer.Exit(1)
    codec = _codec(settings)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("rebuilding", total=None)
        result = asyncio.run(
            rebuild(
                settings,
                codec,
                url,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
    codec.close()
    out.print(
        f"rebuilt from {result.events} events ({result.skipped} skipped) in "
        f"{result.seconds:.1f} s: {result.rate:.0f} events/s",
        highlight=False,
    )


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations of the read model; safe to run again."""
    from projections.database import DatabaseNotConfiguredError, database_url
    from projections.migrate import migrate

    settings = _settings()
    try:
        result = migrate(database_url(settings))
    except DatabaseNotConfiguredError as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        raise fail(f"migration failed: {exc}") from exc
    for mid in result.applied:
        out.print(f"applied {mid}", highlight=False)
    out.print(
        f"{len(result.applied)} applied, {len(result.already)} already applied", highlight=False
    )


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Faust log level: debug, info, warn.")] = "info",
) -> None:
    """Run the pipeline: the dispatcher and one agent per channel (Faust worker)."""
    from adapters.base import ProviderError
    from processors.app import run_worker
    from processors.loop import use_event_loop
    from processors.versions import UntestedVersionError

    # a provider set up wrong at start (an unusable FCM key file) stops it too
    refused: tuple[type[Exception], ...] = (*_setup_errors(), UntestedVersionError, ProviderError)
    settings = _settings()
    use_event_loop(settings)
    try:
        run_worker(settings, loglevel)
    except refused as exc:
        raise fail(str(exc)) from exc


@app.command()
def projector(
    loglevel: Annotated[str, typer.Option(help="Log level: debug, info, warn.")] = "info",
) -> None:
    """Run the NotificationLog projection and tier escalation in a process of their own
    (set NOTIFIER_PROJECTION_ENABLED=false on the workers)."""
    from processors.loop import use_event_loop
    from processors.projector import run_projector

    settings = _settings()
    use_event_loop(settings)
    try:
        run_projector(settings, loglevel)
    except _setup_errors() as exc:
        raise fail(str(exc)) from exc


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every notification.")] = 120.0,
) -> None:
    """Show the flow: sandbox + worker started, sample users and an incident published,
    delivery events printed as they happen (what `make run` runs)."""
    from notifier.demo import run_demo

    raise typer.Exit(run_demo(_settings(), lambda line: out.print(line, highlight=False), timeout))


@app.command()
def bench(
    incidents: Annotated[int, typer.Option(help="Incidents in the throughput phase.")] = 2000,
    rate: Annotated[int, typer.Option(help="Incidents/s in the latency phase.")] = 200,
    seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 10.0,
    users: Annotated[int, typer.Option(help="Profiles in the users directory.")] = 100_000,
    rebuild_events: Annotated[
        int, typer.Option(help="Synthetic events for the rebuild rate; 0 skips it.")
    ] = 1_000_000,
    results_dir: Annotated[
        Path, typer.Option(help="Where the JSON, the PNG and the profile are saved.")
    ] = Path("bench-results"),
    users_per_incident: Annotated[
        int, typer.Option(min=1, help="People paged by each incident (3 channels each).")
    ] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the load.")] = 1,
    provider_latency_ms: Annotated[
        int, typer.Option(min=0, help="How long the sandbox waits before each answer (ms).")
    ] = 0,
    profile: Annotated[
        bool, typer.Option(help="Profile the worker with py-spy in a phase of its own.")
    ] = True,
    projector: Annotated[
        bool,
        typer.Option(
            help="The projection in a process of its own (`notifier projector`), or in the worker."
        ),
    ] = True,
) -> None:
    """Measure the pipeline against the sandbox: throughput, latency, projection lag, RSS,
    the raw Kafka ceiling; saves JSON, a PNG plot and a worker profile in bench-results/,
    checks the goals."""
    from notifier.bench import run_bench
    from notifier.bench.run import Shape

    results = run_bench(
        _settings(),
        lambda line: out.print(line, highlight=False),
        incidents=incidents,
        rate=rate,
        paced_s=seconds,
        users=users,
        rebuild_events=rebuild_events,
        results_dir=results_dir,
        shape=Shape(users_per_incident, workers, provider_latency_ms, profile, projector),
    )
    table = Table("figure", "value", title="notifier bench")
    table.add_row(
        "shape",
        f"{incidents} incidents x {users_per_incident} user(s) x 3 channels, "
        f"{workers} worker(s){' and a projector process' if projector else ''}, "
        f"provider answers after {provider_latency_ms} ms",
    )
    thr, lat = results["throughput"], results["latency_ms"]
    table.add_row("notifications/s (incident -> provider request)", str(thr["notifications_per_s"]))
    cpu = results["cpu_ms_per_notification"]
    table.add_row(
        "CPU ms per notification: worker / engine / every process",
        f"{cpu['worker']} / {cpu['engine']} / {cpu['total']}",
    )
    table.add_row(
        "CPU ms per notification by part",
        ", ".join(f"{k} {v}" for k, v in cpu.items() if k not in ("engine", "total")),
    )
    table.add_row(
        "CPU-bound ceiling of this machine (notifications/s)",
        str(results["cpu_bound_notifications_per_s"]),
    )
    table.add_row("raw Kafka produce->consume msgs/s", str(results["raw_kafka_msgs_per_s"]))
    table.add_row("share of raw ceiling", f"{results['share_of_raw']:.1%}")
    table.add_row(
        f"latency p50/p95/p99 ms at {rate}/s",
        f"{lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')}",
    )
    proj, vis = results["projection"], results["event_to_row_ms"]
    table.add_row("projection events/s into PostgreSQL", str(proj["events_per_s"]))
    table.add_row("projection lag: most events behind", str(proj["max_lag_events"]))
    table.add_row(
        "event -> row p50/p95/p99 ms", f"{vis.get('p50')} / {vis.get('p95')} / {vis.get('p99')}"
    )
    if "rebuild" in results:
        table.add_row(
            f"rebuild events/s ({results['rebuild']['events']} events)",
            str(results["rebuild"]["events_per_s"]),
        )
    table.add_row(f"worker RSS MB ({results['users']} users)", str(results["worker_rss_mb"]))
    out.print(table)
    goals = Table("goal", "bound", "measured", "verdict", title="goals")
    for goal in results["goals"]:
        goals.add_row(goal["goal"], goal["bound"], str(goal["measured"]), goal["verdict"])
    out.print(goals)
    out.print(f"plot: {results['plot']}")
    if "profile" in results:
        out.print(f"worker profile (speedscope): {results['profile']}")


@app.command()
def chaos(
    incidents: Annotated[
        int | None, typer.Option(help="Incidents to publish (10000; --short: 400).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (2).")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Incidents published per second (100; --short: 20).")
    ] = None,
    kill_every_s: Annotated[
        float | None, typer.Option(help="Seconds between SIGKILLs (20; --short: 12).")
    ] = None,
    kills: Annotated[int | None, typer.Option(help="SIGKILLs in all (6; --short: 2).")] = None,
    broker_down_s: Annotated[
        float | None, typer.Option(help="Seconds one broker is down (20; --short: 10).")
    ] = None,
    pg_down_s: Annotated[
        float | None, typer.Option(help="Seconds PostgreSQL is down (30; --short: 8).")
    ] = None,
    garbage: Annotated[
        int | None,
        typer.Option(help="Undecodable messages put on input topics (20; --short: 8).", min=0),
    ] = None,
    settle_timeout_s: Annotated[
        float | None, typer.Option(help="Most seconds to wait for every notification to end.")
    ] = None,
    short: Annotated[bool, typer.Option("--short", help="The CI-sized drill.")] = False,
) -> None:
    """The failure drill (`make chaos`): publish incidents while workers are killed with
    SIGKILL, a broker is stopped and started and PostgreSQL is down; then check that nothing
    was lost. Exits 1 on any loss. Needs the three-broker stack of `make chaos`."""
    from notifier.chaos.run import DrillError, Options, run_drill

    given: dict[str, Any] = {
        k: v
        for k, v in {
            "incidents": incidents,
            "workers": workers,
            "rate": rate,
            "kill_every_s": kill_every_s,
            "kills": kills,
            "broker_down_s": broker_down_s,
            "pg_down_s": pg_down_s,
            "garbage": garbage,
            "settle_timeout_s": settle_timeout_s,
        }.items()
        if v is not None
    }
    options = Options.short_run(**given) if short else Options(**given)
    try:
        verdict, summary, path = run_drill(
            _settings(), options, lambda line: out.print(line, highlight=False)
        )
    except DrillError as exc:
        raise fail(str(exc)) from exc
    table = Table("check", "result", "ok", "note", title=f"notifier chaos {summary['run_id']}")
    for check in verdict.checks:
        table.add_row(
            check.name,
            check.value,
            "[green]ok[/green]" if check.ok else "[red]FAIL[/red]",
            check.note,
        )
    out.print(table)
    figures = Table("figure", "value", title="what happened")
    for entry in summary["journal"]:
        if entry["action"] in ("broker started", "postgres started"):
            figures.add_row(entry["action"].split()[0] + " down (s)", str(entry["down_s"]))
    figures.add_row("workers killed (SIGKILL)", str(summary["disruptions_by_kind"]["kills"]))
    for name, value in verdict.figures.items():
        if name != "extra_requests_per_disruption":  # a table of its own, below
            figures.add_row(name.replace("_", " "), str(value))
    figures.add_row("drill seconds", str(summary["seconds"]))
    out.print(figures)
    out.print(disruption_table(verdict.figures))
    out.print(f"summary: {path}", highlight=False)
    if not verdict.ok:
        raise fail("the drill found losses or unexpected outcomes (see the table)")


def disruption_table(figures: dict[str, Any]) -> Table:
    """The drill's extra provider requests per disruption, as `notifier chaos` prints them."""
    table = Table(
        "disruption",
        "at (s)",
        "lasted (s)",
        "in flight",
        "extra requests",
        "notifications",
        title="extra provider requests per disruption (at most one per notification in flight)",
    )
    for row in figures.get("extra_requests_per_disruption", []):
        table.add_row(
            f"{row['kind']} {row['what']}".strip(),
            f"{row['at_s']:.1f}",
            f"{row['window_s']:.1f}",
            str(row["in_flight"]),
            str(row["extra_requests"]),
            str(row["notifications_with_extra"]),
        )
    unexplained = figures.get("extra_requests_unexplained", 0)
    table.add_row(
        "none (unexplained)",
        "",
        "",
        "",
        f"[red]{unexplained}[/red]" if unexplained else "0",
        "",
    )
    return table


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the provider endpoints.")] = 8025,
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 8026,
    webhook_secret: Annotated[
        str, typer.Option(help="Check generic webhook signatures with this secret.")
    ] = "",
) -> None:
    """Run the provider sandbox: every provider's API, SMTP, recording and fault injection."""
    import asyncio

    from adapters.sandbox.server import sandbox_env, serve

    out.print(
        f"sandbox on http://{host}:{port} (SMTP {smtp_port}); point the notifier at it with:",
        highlight=False,
    )
    for key, value in sandbox_env(host, port, smtp_port).items():
        out.print(f"  {key}={value}", highlight=False)
    served = serve(host, port, smtp_port, webhook_signing_secret=webhook_secret)
    with contextlib.suppress(KeyboardInterrupt):
        if _settings().event_loop == "uvloop":
            import uvloop

            # the fake provider must not be what a benchmark measures: uvloop serves each
            # request at less CPU than asyncio's own loop
            uvloop.run(served)
        else:
            asyncio.run(served)


@app.command()
def bridge(
    port: Annotated[int | None, typer.Option(help="Port; default NOTIFIER_BRIDGE_PORT.")] = None,
) -> None:
    """Run the webhook bridge: provider callbacks and acknowledgements onto Kafka."""
    import asyncio

    from adapters.bridge.server import serve

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"bridge_port": port})
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except _setup_errors() as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        where = f"{settings.bridge_host}:{settings.bridge_port}"
        raise fail(f"bridge cannot listen on {where}: {exc}") from exc


@app.command("reparse-callbacks")
def reparse_callbacks(
    since: Annotated[
        str | None, typer.Option(help="Only requests received at or after this ISO time.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Only one source, e.g. twilio_status, sendgrid_events. Acknowledgements "
            "(slack_actions, twilio_gather) are parsed again only when named here."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Parse and count; publish nothing.")] = False,
) -> None:
    """Parse the archived bridge requests (callbacks.raw) again and publish what they mean:
    after a parser fix, what was refused with a 400 goes through. Callback event ids come
    from the providers' ids, so what was already published is not applied twice."""
    from adapters.bridge.parse import MalformedRequestError
    from adapters.bridge.server import ACK_SOURCES, outgoing, reparse
    from notifier.contracts.records import RawCallback
    from notifier.kafka_io import Publisher, read_topic

    settings = _settings()
    codec = _codec(settings)
    cutoff = datetime.fromisoformat(since) if since else None
    if cutoff is not None and cutoff.tzinfo is None:
        raise fail("--since needs a time zone, e.g. 2026-11-25T03:00:00+00:00")
    publisher = None if dry_run else Publisher(settings, codec)
    read = published = malformed = 0
    for _, value, _, _ in read_topic(settings, "callbacks.raw", from_beginning=True, timeout_s=3):
        raw = codec.decode(value)
        if not isinstance(raw, RawCallback) or (source and raw.source != source):
            continue
        if source is None and raw.source in ACK_SOURCES:
            continue  # an old "Resolve" must not close an incident opened again since
        if cutoff is not None and raw.received_at < cutoff:
            continue
        read += 1
        try:
            records = reparse(raw)
        except MalformedRequestError as exc:
            malformed += 1
            out.print(f"still malformed: {raw.source} {raw.received_at:%Y-%m-%d %H:%M:%S}: {exc}")
            continue
        for record in records:
            if publisher is not None:
                publisher.publish(*outgoing(record))
            published += 1
        if read % 1000 == 0:
            out.print(f"{read} requests read, {published} records", highlight=False)
    if publisher is not None:
        publisher.flush()
    verb = "would publish" if dry_run else "published"
    out.print(
        f"{read} archived requests: {verb} {published} records, {malformed} still malformed",
        highlight=False,
    )


@app.command()
def resend(
    notification_ids: Annotated[
        list[str], typer.Argument(help="NotificationLog ids of failed or cancelled notifications.")
    ],
    by: Annotated[
        str, typer.Option(help="Who asks (recorded on the attempt); default: $USER.")
    ] = "",
    dry_run: Annotated[bool, typer.Option(help="Check and say what would be sent.")] = False,
) -> None:
    """Send failed or cancelled notifications once more, as a new attempt of each (recorded
    in the NotificationLog; sent even if the incident is no longer open)."""
    import psycopg
    from rich.progress import Progress

    from notifier.contracts.records import Channel, NotificationKind, ResendRequested
    from notifier.kafka_io import Publisher
    from projections.database import DatabaseNotConfiguredError, database_url

    settings = _settings()
    who = by or os.environ.get("USER") or "operator"
    try:
        url = database_url(settings)
    except DatabaseNotConfiguredError as exc:
        raise fail(str(exc)) from exc
    with psycopg.connect(url) as conn:
        rows = {
            str(r[0]): r
            for r in conn.execute(
                "SELECT notification_id, incident_id, user_id, channel, escalation_level, kind, "
                "repeat, status, attempt_count FROM notification_log "
                "WHERE notification_id = ANY(%s::uuid[])",
                (notification_ids,),
            ).fetchall()
        }
    problems = [
        f"{nid}: no such notification"
        if nid not in rows
        else f"{nid}: {rows[nid][7]}, only FAILED or CANCELLED notifications are resent"
        for nid in notification_ids
        if nid not in rows or rows[nid][7] not in ("FAILED", "CANCELLED")
    ]
    if problems:
        raise fail("\n".join(problems))
    publisher = None if dry_run else Publisher(settings, _codec(settings))
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("resend", total=len(notification_ids))
        for nid in notification_ids:
            _, incident, user, channel, level, kind, repeat, status, attempts = rows[nid]
            request = ResendRequested(
                event_id=str(uuid.uuid4()),
                occurred_at=_now(),
                incident_id=incident,
                notification_id=nid,
                user_id=user,
                channel=Channel(channel),
                escalation_level=level or 1,
                kind=NotificationKind(kind or "ALERT"),
                repeat=repeat,
                attempt=attempts + 1,
                requested_by=who,
            )
            if publisher is not None:
                publisher.publish("dispatch.commands", incident, request)
            verb = "would resend" if dry_run else "resend"
            out.print(
                f"{verb} {nid} ({channel.lower()} to {user}, {status.lower()}) "
                f"as attempt {attempts + 1}",
                highlight=False,
            )
            progress.advance(task)
    if publisher is not None:
        publisher.flush()


@app.command("log")
def log(incident_id: Annotated[str, typer.Argument(help="The incident to show.")]) -> None:
    """Show the NotificationLog rows of an incident: who was told what, when, and did it arrive."""
    import psycopg

    from projections.database import DatabaseNotConfiguredError, database_url

    settings = _settings()
    try:
        with psycopg.connect(database_url(settings)) as conn:
            rows = conn.execute(
                """SELECT user_id, channel, tier, escalation_level, kind, repeat, status,
                          attempt_count, provider, queued_at, sent_at, delivered_at,
                          failed_at, error
                     FROM notification_log WHERE incident_id = %s
                 ORDER BY escalation_level, user_id, queued_at, channel""",
                (incident_id,),
            ).fetchall()
    except DatabaseNotConfiguredError as exc:
        raise fail(str(exc)) from exc
    except psycopg.Error as exc:
        raise fail(f"PostgreSQL: {exc}") from exc
    table = Table(
        "user",
        "channel",
        "tier",
        "level",
        "kind",
        "repeat",
        "status",
        "attempts",
        "provider",
        "queued",
        "sent",
        "delivered",
        "failed",
        "error",
        title=f"NotificationLog of incident {incident_id}",
    )

    def when(value: datetime | None) -> str:
        return value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if value else ""

    for row in rows:
        (
            user_id,
            ch,
            tier,
            lvl,
            kind,
            repeat,
            status,
            attempts,
            provider,
            queued,
            sent,
            delivered,
            failed,
            error,
        ) = row
        table.add_row(
            user_id,
            ch,
            tier or "",
            str(lvl or ""),
            # notices and repeats are rows of their own: without these they look like copies
            _KIND_SHOWN.get(kind, kind or ""),
            str(repeat) if repeat else "",
            status,
            str(attempts),
            provider or "",
            when(queued),
            when(sent),
            when(delivered),
            when(failed),
            error or "",
        )
    out.print(table)
    if not rows:
        out.print(f"no notifications recorded for incident {incident_id}", highlight=False)


_KIND_SHOWN = {"ALERT": "alert", "ACKNOWLEDGED_NOTICE": "ack notice", "RESOLVED_NOTICE": "resolved"}

deadletter_app = typer.Typer(
    help="Messages the pipeline could not decode or handle: list them, put them back.",
    no_args_is_help=True,
)
app.add_typer(deadletter_app, name="deadletter")
ReasonOption = Annotated[
    str | None,
    typer.Option(help="Only these: text in the reason, error type or stage (any case)."),
]
SinceOption = Annotated[
    str | None, typer.Option(help="Only dead-lettered at or after this ISO time with zone.")
]
SourceTopicOption = Annotated[
    str | None, typer.Option(help="Only messages read from this topic, e.g. incidents.")
]


def _dead_letters(
    settings: Settings, codec: Any, reason: str | None, since: str | None, topic: str | None
) -> list[Any]:
    from notifier import deadletters as dl

    try:
        chosen = dl.selection(settings, reason, since, topic)
        return dl.select(dl.read_dead_letters(settings, codec), chosen)
    except (ValueError, dl.DeadLetterReadError) as exc:
        raise fail(str(exc)) from exc


@deadletter_app.command("list")
def deadletter_list(
    reason: ReasonOption = None,
    since: SinceOption = None,
    topic: SourceTopicOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the newest this many.")] = 50,
) -> None:
    """Show dead letters: when, where from, why, and a preview of the message (contacts
    masked); `replayed` when `deadletter replay` put it back."""
    import psycopg

    from notifier import deadletters as dl
    from projections.database import DatabaseNotConfiguredError, database_url

    settings = _settings()
    codec = _codec(settings)
    found = _dead_letters(settings, codec, reason, since, topic)
    shown = found[-limit:]
    try:
        ledger = dl.ReplayLedger.connect(database_url(settings))
        try:
            replayed = ledger.replayed(shown)
        finally:
            ledger.close()
    except (DatabaseNotConfiguredError, dl.LedgerMissingError, psycopg.Error) as exc:
        err.print(f"replays not shown: {exc}", highlight=False)
        replayed = {}
    rows = [dl.list_row(entry, codec, replayed.get(entry.original)) for entry in shown]
    codec.close()
    if not found:
        out.print("no dead letters match", highlight=False)
        return
    out.print(dl.list_table(rows, out.width))
    more = f", the newest {len(shown)} shown" if len(shown) < len(found) else ""
    out.print(f"{len(found)} dead letter(s) match{more}", highlight=False)


@deadletter_app.command("replay")
def deadletter_replay(
    reason: ReasonOption = None,
    since: SinceOption = None,
    topic: SourceTopicOption = None,
    dry_run: Annotated[bool, typer.Option(help="Publish nothing; say what would be.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before publishing.")] = False,
) -> None:
    """Put the selected dead letters' original messages back on their source topics, each
    once: a second replay skips what was replayed (ledger in PostgreSQL)."""
    import psycopg
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from notifier import deadletters as dl
    from projections.database import DatabaseNotConfiguredError, database_url

    settings = _settings()
    codec = _codec(settings)
    found = _dead_letters(settings, codec, reason, since, topic)
    codec.close()
    try:
        ledger = dl.ReplayLedger.connect(database_url(settings))
    except (DatabaseNotConfiguredError, dl.LedgerMissingError, psycopg.Error) as exc:
        raise fail(str(exc)) from exc
    try:
        todo = dl.plan(found, ledger.replayed(found))
        skipped = len(todo.already) + len(todo.duplicates)
        if not todo.todo:
            out.print(
                f"nothing to replay: {len(found)} dead letter(s) match, {skipped} already replayed",
                highlight=False,
            )
            return
        for entry in todo.todo:
            verb = "would replay" if dry_run else "replay"
            out.print(f"{verb} {dl.describe(entry)}", highlight=False)
        if dry_run:
            out.print(
                f"dry run: would replay {len(todo.todo)} of {len(found)} matching dead "
                f"letter(s), {skipped} already replayed",
                highlight=False,
            )
            return
        if not yes and not typer.confirm(f"Put {len(todo.todo)} message(s) back?"):
            raise typer.Exit(1)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("replaying", total=len(todo.todo))
            result = dl.replay(
                todo.todo, ledger, dl.RawSender(settings), lambda _: bar.advance(task)
            )
    except psycopg.Error as exc:
        raise fail(f"PostgreSQL: {exc}") from exc
    finally:
        ledger.close()
    for entry, why in result.failed:
        err.print(f"[red]not replayed[/red] {entry.address}: {why}", highlight=False)
    out.print(
        f"replayed {result.replayed} of {len(found)} matching dead letter(s); "
        f"{skipped + result.skipped} already replayed, {len(result.failed)} failed",
        highlight=False,
    )
    if result.failed:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    from notifier.logs import configure

    # read directly: a bad setting must reach the command's own clear error, not crash here
    configure(os.environ.get("NOTIFIER_LOG_LEVEL", "INFO"))
    app()
