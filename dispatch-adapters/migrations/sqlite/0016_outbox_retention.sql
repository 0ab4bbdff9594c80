-- Pruning settled outbox deliveries (the sweeper, in bounded batches): settled rows by the time
-- their last try was due, and the pending rows that wait on another (its after_key), so that a
-- delivery a pending one waits on is kept.
CREATE INDEX dispatch_outbox_settled ON dispatch_outbox (due_at) WHERE state <> 'pending';
CREATE INDEX dispatch_outbox_waiting ON dispatch_outbox (after_key) WHERE state = 'pending' AND after_key IS NOT NULL;
