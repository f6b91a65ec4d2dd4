"""Errors that name the recording, the file and the problem, and say what to do."""

from __future__ import annotations


class DcatError(Exception):
    """Base class for errors dcat reports to the user (no traceback needed)."""


class RecordingError(DcatError):
    """A problem with one raw recording.

    str() gives ``<recording>: <file>: <problem> [<hint>]``, the form every message in dcat uses.
    """

    def __init__(self, recording: str, file: str | None, problem: str, hint: str | None = None):
        self.recording = recording
        self.file = file
        self.problem = problem
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:  # noqa: D401
        where = f"{self.recording}: {self.file}" if self.file else f"{self.recording}"
        msg = f"{where}: {self.problem}"
        if self.hint:
            msg += f" ({self.hint})"
        return msg

    def as_dict(self) -> dict:
        return {"recording": self.recording, "file": self.file, "problem": self.problem, "hint": self.hint}


class ShardError(DcatError):
    """A shard or shards directory that does not match the shard spec (schemas/shard.md)."""


class TrainingError(DcatError):
    """Training cannot go on (non-finite loss, empty split, bad settings)."""


class RunDirError(DcatError):
    """The run folder exists, or is not a dcat run."""
