# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A stdout callback for the unit tests that run the roles' task files with ansible-playbook: one JSON report.

ansible-core alone has no JSON stdout callback any more (ansible.posix has it), and ansible-test runs the unit
tests with ansible-core alone. The report has the shape the tests read: plays, their tasks with each host's result,
and the stats per host.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: task_report
type: stdout
short_description: One JSON report of every task's result per host (hubspoke.revtunnel's unit tests)
description:
  - Prints one JSON document with the plays, each task's result per host, and the stats per host.
"""

import json  # noqa: E402

from ansible.plugins.callback import CallbackBase  # noqa: E402


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "task_report"

    def __init__(self):
        super().__init__()
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, **extra):
        self.plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = dict(result._result, **extra)

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed)
        summary = {host: stats.summarize(host) for host in hosts}
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, default=str))
