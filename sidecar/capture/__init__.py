"""From the request path to prediction records: the hand-off queue, the worker, PII anonymisation."""
