"""What one command on a node gave back. No SSH here, so a check can also be
run on this machine's own commands (tests/device)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def brief(self) -> str:
        """Last non-empty line of stderr (else stdout): the usual error line."""
        for text in (self.stderr, self.stdout):
            lines = [line for line in text.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return f"exit status {self.rc}"
