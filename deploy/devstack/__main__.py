"""`python -m devstack up|down|status [--stack NAME] [--brokers N] [--kafka-port P]`.

For failure drills: `stop-broker N` / `start-broker N` (one Kafka node, data kept) and
`stop-postgres` / `start-postgres` (the embedded server, data kept)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from devstack import kafka, postgres, stack
from devstack.config import StackConfig, StackError

DRILLS = ("stop-broker", "start-broker", "stop-postgres", "start-postgres")


def drill(config: StackConfig, command: str, node: int | None) -> str:
    """Stop or start one part of a running stack, keeping its data; what happened."""
    if command.endswith("-broker"):
        # the node count the stack was laid out with, whatever --brokers says
        config = replace(config, brokers=kafka.recorded_brokers(config) or config.brokers)
        if node is None:
            raise StackError(f"{command} needs a node number (1..{config.brokers})")
        if command == "stop-broker":
            done, verb = kafka.stop_node(config, node), "stopped"
        else:
            done, verb = kafka.start_node(config, node), "started"
        return f"kafka node {node} {verb}" + ("" if done else " (it already was)")
    if command == "stop-postgres":
        return "postgres stopped" if postgres.stop(config) else "postgres was not running"
    return f"postgres running at {postgres.restart(config)}"


def main(argv: list[str] | None = None) -> int:
    """Run one stack command; exit 1 with a clear message when a step fails."""
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", *DRILLS])
    parser.add_argument("node", nargs="?", type=int, help="Kafka node of stop/start-broker")
    parser.add_argument("--stack", help="stack name (default: $NOTIFIER_STACK or dev)")
    parser.add_argument("--brokers", type=int, choices=[1, 3], help="Kafka nodes (default 1)")
    parser.add_argument("--kafka-port", type=int, help="first broker port (dev 9092, test 19092)")
    args = parser.parse_args(argv)
    config = StackConfig.from_env(args.stack, args.brokers, args.kafka_port)
    try:
        if args.command == "up":
            env = stack.up(config)
            print(
                f"stack '{config.name}' is up; its settings are in "
                f"{config.state_dir / 'stack.env'}:"
            )
            for key, value in env.items():
                print(f"  {key}={value}")
        elif args.command == "down":
            stopped = stack.down(config)
            print(
                f"stack '{config.name}' is down"
                + (f" (stopped {', '.join(stopped)})" if stopped else " (nothing was running)")
            )
        elif args.command in DRILLS:
            print(drill(config, args.command, args.node))
        else:
            rows = stack.status(config)
            width = max(len(r[0]) for r in rows)
            print(f"stack '{config.name}' ({config.state_dir})")
            for component, state, pid, address in rows:
                print(f"  {component:<{width}}  {state:<8}  pid {pid:<8}  {address}")
    except StackError as exc:
        print(f"stack '{config.name}' {args.command} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
