"""The service platform: REST API, live view, review loop, model versions and the dashboard."""
