"""The provider sandbox's own cost: CPU per request, per provider shape, measured alone.

    .venv/bin/python -m tests.perf.sandbox_load [--requests 3000] [--rounds 3]
        [--concurrency 50] [--shapes sms,email,push,slack,teams,webhook] [--baseline]
        [--profile DIR]

Starts `notifier sandbox` in its own process (as the bench and the tests start it), builds one
real request per shape with the adapters themselves (through a recording proxy in this
process, so the bytes are those a worker sends), then replays each shape `--requests` times
over keep-alive connections with `--concurrency` in flight, `--rounds` times, the shapes
taking turns. The sandbox process's CPU (user + system, from /proc) is read before and after
each round; the client's CPU is not counted. The median round of each shape is printed.
With `--baseline`, a bare aiohttp server (read the body, answer a small JSON, on uvloop as the
sandbox) is measured alongside: what any aiohttp server costs on this machine, right now.
With `--profile`, py-spy samples the sandbox through the whole run into a speedscope file.
Not a test: pytest collects no function here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from adapters.providers import BUILDERS
from adapters.sandbox.server import sandbox_env
from notifier.contracts.records import Channel, NotificationKind, SendCommand
from notifier.localprocs import free_port, notifier_command
from notifier.settings import Settings
from tests.samples import sample

WEBHOOK_SECRET = "sandbox-load-webhook-secret"
# shape -> (channel, provider name, address; {base} is where the adapter's requests go)
SHAPES: dict[str, tuple[Channel, str, str]] = {
    "sms": (Channel.SMS, "twilio", "+14155550101"),
    "email": (Channel.EMAIL, "sendgrid", "alice@example.com"),
    "push": (Channel.PUSH, "fcm", "fcm-token-1"),
    "slack": (Channel.SLACK, "slack", "U0ALICE"),
    "teams": (Channel.TEAMS, "teams", "{base}/teams/webhook/alice"),
    "webhook": (Channel.WEBHOOK, "webhook", "{base}/hooks/alice"),
}


@dataclass(frozen=True)
class Captured:
    """One request as an adapter sent it."""

    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: bytes


@contextlib.contextmanager
def sandbox_process(log: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """`notifier sandbox` on free ports: its URL, the settings pointing at it, its pid."""
    port, smtp_port = free_port(), free_port()
    ports = ["--port", str(port), "--smtp-port", str(smtp_port)]
    argv = notifier_command("sandbox", *ports, "--webhook-secret", WEBHOOK_SECRET)
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sandbox did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url, sandbox_env("127.0.0.1", port, smtp_port), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def capture(sandbox: str, env: dict[str, str], shapes: list[str]) -> dict[str, Captured]:
    """Each shape's request, sent once by its adapter through a proxy that keeps the bytes."""
    seen: list[Captured] = []
    session = aiohttp.ClientSession()

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        seen.append(Captured(request.method, request.path_qs, headers, body))
        async with session.request(
            request.method, sandbox + request.path_qs, data=body, headers=headers
        ) as answer:
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                headers={k: v for k, v in answer.headers.items() if k.lower() == "x-message-id"},
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        k.removeprefix("NOTIFIER_").lower(): v.replace(sandbox, base)
        for k, v in env.items()
        if k.startswith("NOTIFIER_")
    }
    values.update(
        send_timeout_s=5.0,
        callback_base_url="http://127.0.0.1:9/bridge",
        webhook_signing_secret=WEBHOOK_SECRET,
    )
    settings = Settings.model_validate(values)
    found: dict[str, Captured] = {}
    try:
        for shape in shapes:
            channel, name, address = SHAPES[shape]
            provider = BUILDERS[(channel, name)](settings)
            command = sample(
                SendCommand,
                channel=channel,
                address=address.format(base=base),
                kind=NotificationKind.ALERT,
                title="[CRITICAL] db down",
                body="Primary database unreachable on db-1; checkout is failing.",
                address_params={"method": "POST", "auth": "NONE"},
                provider=None,
                url="https://inc.example.com/1",
            )
            seen.clear()
            try:
                await provider.send(command)
            finally:
                await provider.close()
            if len(seen) != 1:
                raise RuntimeError(f"{shape}: the adapter made {len(seen)} requests, not 1")
            found[shape] = seen[0]
    finally:
        await runner.cleanup()
        await session.close()
    return found


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def replay(
    sandbox: str, request: Captured, count: int, concurrency: int
) -> tuple[float, dict[int, int]]:
    """Send `request` `count` times, `concurrency` in flight over keep-alive connections:
    the wall time it took and how many answers had each status."""
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    left = count
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.request(
                    request.method,
                    sandbox + request.path,
                    data=request.body,
                    headers=request.headers,
                ) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


def _clear(sandbox: str) -> None:
    request = urllib.request.Request(f"{sandbox}/_sandbox/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


# what any aiohttp server costs: read the body, answer a small JSON, on the sandbox's loop
BARE_SERVER = """
import sys, uvloop
from aiohttp import web

async def answer(request):
    await request.read()
    return web.json_response({"ok": True})

async def main():
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await __import__("asyncio").Event().wait()

uvloop.run(main())
"""


@contextlib.contextmanager
def bare_process() -> Iterator[tuple[str, int]]:
    """A bare aiohttp server in its own process: its URL and pid."""
    port = free_port()
    argv = [sys.executable, "-c", BARE_SERVER, str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the bare aiohttp server did not start")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every shape's figures against one sandbox process (and a bare aiohttp server, with
    --baseline)."""
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        raise SystemExit(f"unknown shapes {sorted(unknown)}; known: {', '.join(SHAPES)}")
    out_dir = Path(args.profile or ".")
    with sandbox_process(Path(args.log)) as (sandbox, env, pid), contextlib.ExitStack() as stack:
        requests = await capture(sandbox, env, shapes)
        targets = [("sandbox", sandbox, pid)]
        if args.baseline:
            targets.append(("bare aiohttp", *stack.enter_context(bare_process())))
        if args.profile:
            stack.enter_context(profiled(pid, out_dir / "sandbox.speedscope.json"))
        rounds: dict[tuple[str, str], list[tuple[float, float]]] = {
            (target, shape): [] for target, _, _ in targets for shape in shapes
        }
        for _, url, _ in targets:
            for shape in shapes:  # warm up: every route, every cache
                await replay(url, requests[shape], min(args.requests, 300), args.concurrency)
        # the shapes (and servers) take turns, so a burst of load from elsewhere on the
        # machine spreads over all of them rather than landing on one
        for _ in range(args.rounds):
            for shape in shapes:
                for target, url, target_pid in targets:
                    _clear(sandbox)
                    before = cpu_s(target_pid)
                    wall, statuses = await replay(
                        url, requests[shape], args.requests, args.concurrency
                    )
                    used = cpu_s(target_pid) - before
                    bad = {s: n for s, n in statuses.items() if not 200 <= s < 300}
                    if bad:
                        raise RuntimeError(f"{shape}: {target} refused requests: {bad}")
                    rounds[target, shape].append(
                        (1000 * used / args.requests, args.requests / wall)
                    )
        _clear(sandbox)
    # the median round: the machine is shared, and a round can be slowed by something else
    return [
        {
            "server": target,
            "shape": shape,
            "requests": args.requests,
            "rounds": args.rounds,
            "cpu_ms_per_request": statistics.median(cpu for cpu, _ in done),
            "requests_per_s": statistics.median(rate for _, rate in done),
        }
        for (target, shape), done in rounds.items()
    ]


@contextlib.contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """py-spy sampling `pid` while the block runs (needs py-spy and ptrace rights)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--rate", "400", "--format", "speedscope"]
    argv += ["-o", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)  # py-spy attaches before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        print(f"profile: {out}", file=sys.stderr)


def main() -> None:
    """Parse the options, measure, print one line per shape."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per shape")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per shape (median kept)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument(
        "--baseline", action="store_true", help="measure a bare aiohttp server alongside"
    )
    parser.add_argument("--profile", default="", help="folder for a py-spy speedscope file")
    parser.add_argument("--log", default="/tmp/sandbox-load.log", help="the sandbox's output")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    print(
        f"median of {args.rounds} rounds of {args.requests} requests, {args.concurrency} in flight"
    )
    print(f"{'server':<13} {'shape':<8} {'cpu ms/req':>10} {'req/s':>8}")
    for row in rows:
        print(
            f"{row['server']:<13} {row['shape']:<8} {row['cpu_ms_per_request']:>10.3f}"
            f" {row['requests_per_s']:>8.0f}"
        )


if __name__ == "__main__":
    main()
