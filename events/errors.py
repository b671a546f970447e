"""Errors of the event log."""


class EventLogError(Exception):
    """Base of every error the event log raises."""


class VersionConflict(EventLogError):
    """Another writer appended to the stream first."""


class EventLogUnavailable(EventLogError):
    """The log's storage cannot be opened or written."""


class UnknownEventType(EventLogError):
    """A stored event whose type or schema version this code cannot read."""
