"""The dashboard (a static page or served live) and the HTTP server of ``monitoring serve``."""
