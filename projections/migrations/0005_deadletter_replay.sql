-- The ledger of `notifier deadletter replay`. Not part of the NotificationLog read model: a
-- rebuild keeps it (it cannot be derived from the topics).

-- One row per original message put back on its source topic, keyed by where that message was
-- first read (not by the dead letter): the same message dead-lettered twice (a redelivery
-- after a rebalance, a producer retry) is replayed once. A replayed copy that fails again is a
-- new message at a new offset, so it can be replayed again after the next fix.
CREATE TABLE deadletter_replay (
    source_topic          text        NOT NULL,
    source_partition      integer     NOT NULL,
    source_offset         bigint      NOT NULL,
    deadletter_topic      text        NOT NULL,
    deadletter_partition  integer     NOT NULL,
    deadletter_offset     bigint      NOT NULL,
    deadletter_event_id   text        NOT NULL,
    replayed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);

COMMENT ON TABLE deadletter_replay IS
    'Dead-lettered messages already put back on their source topic by `notifier deadletter replay`.';
COMMENT ON COLUMN deadletter_replay.deadletter_partition IS
    'Where the dead letter was read; the replayed copy carries notifier-replayed-from: deadletter@<partition>:<offset>.';
