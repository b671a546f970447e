"""Errors of the event log."""


class EventLogError(Exception):
    """Base of every error the event log raises."""


class VersionConflict(EventLogError):
    """Another writer appended to the stream first."""


class EventLogUnavailable(EventLogError):
    """The log's storage cannot be opened or written."""


class EventLogMissing(EventLogError):
    """A command that only reads the log found none where the settings say."""


class UnknownEventType(EventLogError):
    """A stored event whose type or schema version this code cannot read."""
