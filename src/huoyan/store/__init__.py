"""Records: SQLAlchemy tables with Alembic migrations, a content-addressed blob store,
and a durable spool that keeps records through a database outage."""
