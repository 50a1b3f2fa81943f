-- Tier state per (incident, user): the escalation rules' memory, folded by the projection in
-- the same transaction as the rows and offsets (issue #14). It was a Faust table whose
-- agent read every delivery event a second time. The value is the JSON the table held:
-- {"levels": {level: TierState}, "notifications": {notification_id: level}}.
CREATE TABLE tier_state (
    key text PRIMARY KEY,  -- incident_id|user_id
    state jsonb NOT NULL
);
