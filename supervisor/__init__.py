"""The Eunomia supervisor: owns tracer workers, the store and the control API."""

__version__ = "0.1.0"
