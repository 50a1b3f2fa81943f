"""Topic contracts: Avro schemas in schemas/, their Python records, and the wire codec."""

from notifier.contracts.errors import ContractError

__all__ = ["ContractError"]
