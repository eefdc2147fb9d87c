"""Compositions of stages and their executors (in-process, Ray). The only package that imports ray."""
