-- The ops dashboard counts events, decisions and deliveries per minute over the last hour,
-- every few seconds. BRIN indexes on their time columns let those queries read only the
-- recent end of each table; rows arrive in time order, so the indexes are a few pages and
-- cost next to nothing on the insert path (unlike a B-tree per column).
CREATE INDEX IF NOT EXISTS events_created_brin ON events USING brin (created_at)
    WITH (autosummarize = on);
CREATE INDEX IF NOT EXISTS decisions_decided_brin ON decisions USING brin (decided_at)
    WITH (autosummarize = on);
CREATE INDEX IF NOT EXISTS deliveries_sent_brin ON deliveries USING brin (sent_at)
    WITH (autosummarize = on);
CREATE INDEX IF NOT EXISTS deliveries_finished_brin ON deliveries USING brin (finished_at)
    WITH (autosummarize = on);
