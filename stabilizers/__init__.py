"""Temporal filters over [T, ...] sequences: functional + small configurable objects. No I/O, no models."""
