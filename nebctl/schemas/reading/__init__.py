"""Manifest files to plain data with positions, before any model sees them.

``sources`` finds the files that paths name and reads their text; ``limits`` bounds what hostile input can cost;
two YAML readers turn text into ``raw_documents.RawDocument`` values: ``fast`` (libyaml's parser, for plain
files, no positions) and ``positioned`` (ruamel.yaml, for everything else and for every diagnostic).
``schemas.loading`` chooses between the readers; tests/unit/schemas/test_fast_loading.py checks that they agree.
"""
