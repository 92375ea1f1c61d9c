"""The service's persistent state (SQLAlchemy 2 + Alembic): spool records, jobs, outbox, audit.

Sits below ``api``, ``adapters`` and ``worker`` and above ``core``; never imports ``pipeline``.
"""
