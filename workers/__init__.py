"""Tracer workers: the tracer format (spec, arguments, plan) and the worker process runtime.

The supervisor side imports :mod:`workers.spec`, :mod:`workers.args`, :mod:`workers.plan`
and :mod:`workers.catalog`; a worker process imports only the plan and the runtime, so
that it stays small (no pydantic, no YAML) after loading.
"""
