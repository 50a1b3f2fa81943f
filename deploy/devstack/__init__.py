"""The local stack as code: a real Kafka broker (KRaft) and PostgreSQL, started on loopback.

`python -m devstack up|down|status` (what `make up`, `make down`, `make status` run).
"""

from devstack.config import StackConfig, StackError

__all__ = ["StackConfig", "StackError"]
