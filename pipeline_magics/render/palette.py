"""The colours of statuses and step kinds, for every view (result, live panel, graph, history, tests, Vault form)."""
from __future__ import annotations

GREEN, RED, ORANGE, BLUE, GREY, DARK_GREY = "#2e7d32", "#c62828", "#ef6c00", "#1565c0", "#757575", "#616161"

#: a status's text colour (a run's, a step's, a test's)
STATUS_COLOURS = {"done": GREEN, "failed": RED, "cancelled": ORANGE, "running": BLUE, "pending": GREY,
                  "passed": GREEN}
#: a graph node's fill and border by status (after a run)
NODE_STATUS_COLOURS = {"done": ("#c8e6c9", GREEN), "failed": ("#ffcdd2", RED), "running": ("#bbdefb", BLUE),
                       "cancelled": ("#ffe0b2", ORANGE), "pending": ("#eeeeee", "#9e9e9e")}
#: a graph node's fill and border by step kind (before a run)
KIND_COLOURS = {"extract": ("#e3f2fd", BLUE), "transform": ("#f5f5f5", DARK_GREY),
                "expect": ("#fff8e1", "#f9a825"), "load": ("#ede7f6", "#5e35b1")}
