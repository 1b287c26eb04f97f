"""The API and page routers, one module per area."""
