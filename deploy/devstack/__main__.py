"""`python -m devstack up|down|status [--stack NAME] [--brokers N] [--kafka-port P]`."""

from __future__ import annotations

import argparse
import sys

from devstack import stack
from devstack.config import StackConfig, StackError


def main(argv: list[str] | None = None) -> int:
    """Run one stack command; exit 1 with a clear message when a step fails."""
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
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
