"""The admin port: its app (metrics, health, JSON API) and the upstream readiness probe."""
