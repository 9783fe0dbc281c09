"""Plan renderers: text for people, a JSON document for tools, Graphviz DOT for the action graph.

The CLI (``nebctl diff``, ``nebctl apply``) and the service import ``render_text``, ``render_json`` and
``render_dot`` from here. All three are pure functions of a ``Plan`` and never print a sensitive value; the
JSON format is documented in ``docs/plan-json.md``.
"""

from __future__ import annotations

from nebctl.rendering.document import FORMAT_VERSION, render_json
from nebctl.rendering.graph import render_dot
from nebctl.rendering.text import render_text

__all__ = ["FORMAT_VERSION", "render_dot", "render_json", "render_text"]
