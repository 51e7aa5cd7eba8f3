"""The collector's read-only status page (served by `server.StatusPage`)."""
