"""The sidecar's own HTTP/1.1 client: requests (client), the wire (wire), retried notifications (delivery)."""
