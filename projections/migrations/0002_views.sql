-- Views for the questions people ask of the NotificationLog.

-- Per incident: how many notifications, in which state, and how fast the first one went out.
CREATE VIEW incident_summary AS
SELECT
    incident_id,
    count(*)                                             AS notifications,
    count(DISTINCT user_id)                              AS users,
    count(*) FILTER (WHERE status = 'QUEUED')            AS queued,
    count(*) FILTER (WHERE status = 'SENDING')           AS sending,
    count(*) FILTER (WHERE status = 'SENT')              AS sent,
    count(*) FILTER (WHERE status = 'DELIVERED')         AS delivered,
    count(*) FILTER (WHERE status = 'FAILED')            AS failed,
    count(*) FILTER (WHERE status = 'CANCELLED')         AS cancelled,
    max(escalation_level)                                AS max_escalation_level,
    min(queued_at)                                       AS first_queued_at,
    min(sent_at)                                         AS first_sent_at,
    min(delivered_at)                                    AS first_delivered_at,
    max(updated_at)                                      AS last_update_at
FROM notification_log
GROUP BY incident_id;

-- Per channel: outcomes, success rate and provider latency of its attempts.
CREATE VIEW channel_success_rate AS
SELECT
    l.channel,
    count(*)                                                         AS notifications,
    count(*) FILTER (WHERE l.status IN ('SENT', 'DELIVERED'))        AS succeeded,
    count(*) FILTER (WHERE l.status = 'FAILED')                      AS failed,
    round(count(*) FILTER (WHERE l.status IN ('SENT', 'DELIVERED'))::numeric
          / nullif(count(*) FILTER (WHERE l.status IN ('SENT', 'DELIVERED', 'FAILED')), 0),
          4)                                                         AS success_rate,
    sum(l.attempt_count)                                             AS attempts,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms)
       FROM notification_attempt a WHERE a.channel = l.channel)      AS p50_latency_ms,
    (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms)
       FROM notification_attempt a WHERE a.channel = l.channel)      AS p95_latency_ms
FROM notification_log l
GROUP BY l.channel;
