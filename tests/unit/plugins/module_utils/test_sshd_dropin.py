# -*- coding: utf-8 -*-
# Copyright: (c) 2025, hubspoke.revtunnel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""sshd_dropin's logic with a stand-in sshd (a shell script run as a real process): what is written, checked, put
back and reloaded, in which order. Real sshd refusing a real drop-in is the security lab's (test_sshd_never_broken,
test_penalties)."""

from __future__ import annotations

import os
import subprocess

import pytest
from ansible_collections.hubspoke.revtunnel.plugins.module_utils._sshd_dropin import DropinError, apply, render

# -T prints its keywords; -t -f FILE refuses a file that holds 'Bogus'; -t (the whole configuration) refuses while
# the drop-in holds 'Clash' (a keyword another file of the configuration contradicts).
FAKE_SSHD = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
  -T) printf 'port 22\\npersourcepenaltyexemptlist none\\n';;
  -t) if [ "$2" = -f ]; then ! grep -q Bogus "$3" || {{ echo "Bogus: bad configuration option" >&2; exit 255; }}
      else ! grep -qs Clash "{dropin}" || {{ echo "Clash: conflicting value" >&2; exit 255; }}; fi;;
esac
"""


@pytest.fixture
def lab(tmp_path):
    dropin, log = tmp_path / "10-x.conf", tmp_path / "calls"
    sshd = tmp_path / "sshd"
    sshd.write_text(FAKE_SSHD.format(log=log, dropin=dropin))
    sshd.chmod(0o755)
    commands = []

    def run(argv):
        if isinstance(argv, str):
            proc = subprocess.run(argv, shell=True, capture_output=True, text=True, check=False)  # noqa: S602
        elif argv[0] == "systemctl":
            commands.append(argv)
            return 0, "", ""
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def calls():
        return [line.split()[0] + (" -f" if " -f " in line else "") for line in log.read_text().splitlines()] \
            if log.exists() else []

    ids = (os.getuid(), os.getgid())
    return dropin, str(sshd), run, commands, calls, ids


def test_a_new_dropin_is_checked_alone_then_whole_and_sshd_reloads_once(lab):
    dropin, sshd, run, commands, calls, ids = lab
    result = apply(str(dropin), run, b"MaxStartups 10\n", sshd=sshd, service="ssh", ids=ids)
    assert result.changed and result.reloaded and dropin.read_bytes() == b"MaxStartups 10\n"
    assert calls() == ["-t -f", "-t"] and commands == [["systemctl", "reload", "ssh"]]
    assert oct(dropin.stat().st_mode & 0o777) == "0o644"
    again = apply(str(dropin), run, b"MaxStartups 10\n", sshd=sshd, service="ssh", ids=ids)
    # A second run writes nothing and reloads nothing, but checks the whole configuration again.
    assert not again.changed and not again.reloaded and len(commands) == 1 and calls() == ["-t -f", "-t", "-t"]


def test_an_unchanged_dropin_that_sshd_refuses_is_an_error_not_ok(lab):
    # An interrupted run can leave a refused drop-in in place: the next run, with the same content, must say so.
    dropin, sshd, run, commands, _calls, ids = lab
    dropin.write_bytes(b"Clash yes\n")
    with pytest.raises(DropinError, match=r"sshd refuses its configuration as it is, with .*10-x.conf unchanged.*"
                                          r"Clash: conflicting value"):
        apply(str(dropin), run, b"Clash yes\n", sshd=sshd, service="ssh", ids=ids)
    assert dropin.read_bytes() == b"Clash yes\n" and commands == []


def test_a_relative_path_is_refused_before_anything_runs(lab):
    _dropin, sshd, run, commands, calls, ids = lab
    with pytest.raises(DropinError, match="must be absolute"):
        apply("10-x.conf", run, b"MaxStartups 10\n", sshd=sshd, service="ssh", ids=ids)
    assert calls() == [] and commands == []


def test_a_content_sshd_refuses_alone_is_never_written(lab):
    dropin, sshd, run, commands, _calls, ids = lab
    dropin.write_bytes(b"MaxStartups 10\n")
    with pytest.raises(DropinError, match=r"sshd rejected the configuration, so it was not applied "
                                          r".*10-x.conf.*Bogus: bad"):
        apply(str(dropin), run, b"Bogus yes\n", sshd=sshd, service="ssh", ids=ids)
    assert dropin.read_bytes() == b"MaxStartups 10\n" and commands == []
    assert sorted(p.name for p in dropin.parent.iterdir()) == ["10-x.conf", "calls", "sshd"]


@pytest.mark.parametrize("before", [None, b"MaxStartups 10\n"])
def test_a_dropin_the_whole_configuration_refuses_is_taken_back_and_named(lab, before):
    dropin, sshd, run, commands, _calls, ids = lab
    if before is not None:
        dropin.write_bytes(before)
    with pytest.raises(DropinError, match=r"with .*10-x.conf in place, so it was not applied and sshd was not "
                                          r"reloaded \(.*\)\. sshd said: Clash: conflicting value"):
        apply(str(dropin), run, b"Clash yes\n", sshd=sshd, service="ssh", ids=ids)
    assert (dropin.read_bytes() if dropin.exists() else None) == before and commands == []


def test_an_sshd_without_the_keyword_is_left_as_it_is(lab):
    dropin, sshd, run, commands, calls, ids = lab
    result = apply(str(dropin), run, b"PerSourcePenalties no\n", sshd=sshd, service="ssh",
                   require_keywords=["PerSourcePenalties"], ids=ids)
    assert not result.changed and not result.supported and not dropin.exists() and commands == []
    assert calls() == ["-T"]
    known = apply(str(dropin), run, b"PerSourcePenaltyExemptList 127.0.0.1/32\n", sshd=sshd, service="ssh",
                  require_keywords=["PerSourcePenaltyExemptList"], ids=ids)
    assert known.changed and known.supported and dropin.exists()


def test_absent_removes_and_reloads_only_when_there_was_a_dropin(lab):
    dropin, sshd, run, commands, _calls, ids = lab
    assert not apply(str(dropin), run, state="absent", sshd=sshd, service="ssh", ids=ids).changed
    assert commands == []
    dropin.write_bytes(b"x\n")
    assert apply(str(dropin), run, state="absent", sshd=sshd, service="ssh", check_mode=True).changed
    assert dropin.exists() and commands == []
    result = apply(str(dropin), run, state="absent", sshd=sshd, service="ssh")
    assert result.changed and result.reloaded and not dropin.exists() and commands == [["systemctl", "reload", "ssh"]]


def test_check_mode_reports_a_change_and_runs_nothing(lab):
    dropin, sshd, run, commands, calls, ids = lab
    result = apply(str(dropin), run, b"MaxStartups 10\n", sshd=sshd, service="ssh", check_mode=True, want_diff=True,
                   ids=ids)
    assert result.changed and not dropin.exists() and calls() == [] and commands == []
    assert result.diffs[0]["after"] == "MaxStartups 10\n"


def test_a_mended_mode_is_a_change_without_a_reload(lab):
    dropin, sshd, run, commands, _calls, ids = lab
    dropin.write_bytes(b"MaxStartups 10\n")
    dropin.chmod(0o600)
    result = apply(str(dropin), run, b"MaxStartups 10\n", sshd=sshd, service="ssh", ids=ids)
    assert result.changed and not result.reloaded and commands == []
    assert oct(dropin.stat().st_mode & 0o777) == "0o644"


def test_settings_are_rendered_one_checked_word_each():
    text = render({"PerSourcePenaltyExemptList": ["127.0.0.1/32", "::1/128"], "MaxStartups": 10}, "managed\nwhy")
    assert text == "# managed\n# why\nPerSourcePenaltyExemptList 127.0.0.1/32,::1/128\nMaxStartups 10\n"


@pytest.mark.parametrize("settings", [
    {"Port": "22\nPermitRootLogin yes"}, {"Port": "22 23"}, {"Port\nX": "1"}, {"Port": ["1", "2,3"]},
    {"Port": "'1'"}, {"Port": "#1"}, {"Port": []}, {"Port": True}, {"Port": None}, {}, {"Port": "a\\b"},
    {"Match": "all"}, {"include": "/tmp/x.conf"},
])
def test_settings_that_could_add_a_line_or_an_option_are_refused(settings):
    with pytest.raises(DropinError, match="settings"):
        render(settings)
