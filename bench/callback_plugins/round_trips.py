# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Callback of bench/converge.py: counts a run's task results per host and the tasks that ran a module on it."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: round_trips
type: aggregate
short_description: Count task results and host round trips for bench/converge.py
description:
  - Writes, at the end of the play run, a JSON file (path in the environment variable BENCH_ROUND_TRIPS_FILE)
    with the recap of every host, how many task results ran a module on the host (each loop item counts),
    and the tasks that took the most wall time.
  - Does nothing when BENCH_ROUND_TRIPS_FILE is not set.
"""

# Actions that run on the controller alone: their results cost no round trip to the host.
CONTROLLER_ACTIONS = {
    "add_host", "assert", "debug", "fail", "group_by", "import_role", "import_tasks", "include_role",
    "include_tasks", "include_vars", "meta", "set_fact", "set_stats", "validate_argument_spec",
}


def _short(action):
    return (action or "").rsplit(".", 1)[-1]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "round_trips"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("BENCH_ROUND_TRIPS_FILE")
        self._remote = Counter()
        self._task_seconds = defaultdict(float)
        self._task = None
        self._started = None

    def _close_task(self):
        if self._task is not None:
            self._task_seconds[self._task] += time.monotonic() - self._started
            self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._task, self._started = task.get_name(), time.monotonic()

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _count(self, result):
        action = _short(getattr(result._task, "resolved_action", None) or result._task.action)
        if action in CONTROLLER_ACTIONS:
            return
        items = result._result.get("results")
        if isinstance(items, list):
            ran = sum(1 for item in items if isinstance(item, dict) and not item.get("skipped"))
        else:
            ran = 1
        self._remote[result._host.get_name()] += ran

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_runner_on_unreachable(self, result):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        if not self._path:
            return
        hosts = {}
        for host in sorted(stats.processed):
            recap = stats.summarize(host)
            recap["remote"] = self._remote[host]
            hosts[host] = recap
        slowest = sorted(self._task_seconds.items(), key=lambda kv: -kv[1])[:10]
        with open(self._path, "w", encoding="utf-8") as out:
            json.dump({"hosts": hosts, "slowest_tasks": [[name, round(s, 2)] for name, s in slowest]}, out)
