"""Mirroring to the NAS: the durable outbox, the worker process that drains it, and the
supervisor that runs that process next to Orthanc."""
