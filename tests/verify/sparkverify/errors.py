"""What the suite raises when it cannot look at a node at all."""


class VerifyEnvironmentError(Exception):
    """The suite could not look at a node at all (not a property of the node's state)."""
