"""The one exception the CLI turns into a single line on stderr."""


class LabError(Exception):
    """A problem the user can act on; printed without a traceback."""
