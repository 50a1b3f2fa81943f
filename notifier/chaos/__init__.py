"""`notifier chaos` (`make chaos`): the failure drill.

Incidents are published to a three-broker stack while workers are killed with SIGKILL again
and again, one broker is stopped and started and PostgreSQL is down for a while, with
failures injected at the providers; then every expected notification is checked in the
NotificationLog against what the provider sandbox received. `plan` says what is published
and expected, `faults` does the drill's actions, `verify` checks, `run` puts them together.
"""
