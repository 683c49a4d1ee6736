"""Limits for the workers of untrusted (custom) tracers: cgroups or rlimits, BPF time, privileges."""
