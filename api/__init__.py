"""The management API (and, later, the web console): `footfall api`, a FastAPI app under /api/v1/.

Every write is a command on Kafka (schemas/user_commands.py, schemas/identity.py); reads come from the
ClickHouse projections, directly or through the projector's read API when the engine is embedded.
"""
