"""Run the ``tomodrgn`` command line in this process (no torch import per call): ``tomodrgn.cli.main(argv)`` with
``SystemExit`` caught and stdout / stderr taken from pytest's ``capsys``. Any other exception escaping ``main`` is
what a user would see as a traceback: it is written to stderr with exit status 1, so the callers' checks (exit 2,
one line, no "Traceback") fail on it exactly as they would on a subprocess."""

import subprocess
import traceback
import warnings


def run_cli(capsys, *argv) -> subprocess.CompletedProcess:
    from tomodrgn.cli import main

    argv = [str(a) for a in argv]
    capsys.readouterr()  # drop anything printed before
    code, tb = 0, ""
    try:
        main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback the user would see
        code, tb = 1, traceback.format_exc()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["tomodrgn", *argv], code, out.out, out.err + tb)


def run_cli_as_user(capsys, *argv) -> subprocess.CompletedProcess:
    """:func:`run_cli` with the warning filters of a fresh process (Python's default: each warning once per place;
    ``pytest -W ignore`` would hide them), so the ``warning:`` lines are those a user sees."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return run_cli(capsys, *argv)


def assert_user_error(res: subprocess.CompletedProcess, *culprits: str) -> str:
    """Exit 2, a single stderr line 'tomodrgn CMD: error: …' naming every culprit, no traceback; returns the line."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and " error: " in lines[0], res.stderr
    for c in culprits:
        assert c in lines[0], (c, lines[0])
    return lines[0]
