"""The request path: the proxy app, header rewriting, coalesced writes, runtime flags, request metrics."""
