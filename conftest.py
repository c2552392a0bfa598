"""Lets ``pytest`` work from a plain checkout too: load the plugin unless it is installed."""

from importlib.metadata import entry_points

if not any(ep.value == "tpconform.pytest_plugin.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["tpconform.pytest_plugin.plugin"]
