"""Test-only stdout callback: the whole playbook run as one JSON document, in the shape of ansible.posix's `json`
callback ({plays: [{play, tasks: [{task, hosts: {host: result}}]}], stats, global_custom_stats}). The role tests
read stats, custom stats and failure messages from it; the lean install carries ansible-core alone, and the json
callback lives in the ansible.posix collection."""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: lab_json
type: stdout
short_description: the playbook run as one JSON document (tests only)
description: Plays, tasks and per-host results, stats and custom stats, printed once at the end.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "lab_json"

    def __init__(self) -> None:
        super().__init__()
        self.plays: list[dict[str, Any]] = []

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def _task(self, task: Any) -> dict[str, Any]:
        tasks = self.plays[-1]["tasks"] if self.plays else []
        if not tasks or tasks[-1]["task"]["id"] != str(task._uuid):
            tasks.append({"task": {"name": task.get_name(), "id": str(task._uuid)}, "hosts": {}})
        return tasks[-1]

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._task(task)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self._task(task)

    def _record(self, result: Any, **extra: Any) -> None:
        self._task(result._task)["hosts"][result._host.get_name()] = {**result._result, **extra}

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        hosts = sorted(stats.processed.keys())
        doc = {
            "plays": self.plays,
            "stats": {host: stats.summarize(host) for host in hosts},
            "custom_stats": {host: value for host, value in stats.custom.items() if host != "_run"},
            "global_custom_stats": stats.custom.get("_run", {}),
        }
        self._display.display(json.dumps(doc, default=str, sort_keys=True))
