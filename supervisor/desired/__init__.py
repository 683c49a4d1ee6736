"""The desired state: which instances the agent should run, persisted and applied as a document."""

from supervisor.desired.controller import DesiredState, state_file_path
from supervisor.desired.document import DesiredInstance, DocumentError, Problem

__all__ = ["DesiredInstance", "DesiredState", "DocumentError", "Problem", "state_file_path"]
