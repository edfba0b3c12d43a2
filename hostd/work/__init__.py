"""Background work: the durable queue's worker pool, webhook deliveries, maintenance after pushes."""
