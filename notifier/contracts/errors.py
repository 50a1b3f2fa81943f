"""The one error raised for anything that breaks a topic contract."""


class ContractError(ValueError):
    """Bytes or a record that do not fit the topic contract; `reason` says why."""

    def __init__(self, reason: str, *, schema_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.schema_id = schema_id
