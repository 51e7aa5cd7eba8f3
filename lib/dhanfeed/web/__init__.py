"""The collector's read-only status page: `server` (the HTTP server, `StatusPage`, and the
static files) and `api` (the JSON answers it serves, built from `health` and the store)."""
