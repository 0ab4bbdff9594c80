-- Delivery ids are forgotten after 30 days by the sweeper: by age, through this index.

CREATE INDEX dispatch_delivery_received ON dispatch_delivery (received_at);
