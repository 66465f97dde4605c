"""The benchmark harness: profiles, devices, the runs as parametrized benchmarks, and a
summary of coupling robustness at the end of the session (terminal and JSON).

    pytest suite/ --benchmark-json out.json                 # smoke profile, CPU
    pytest suite/ --profile paper --device cuda --benchmark-json paper.json
    pytest suite/ --case thermo --case npp                  # a subset of the systems
    pytest suite/ --method pytorch_optimizer:Lion+gn --method soap+gn \
        --optimizer-args 'pytorch_optimizer:Lion={"betas": [0.9, 0.99]}'   # your method

The profile may also come from the environment variable PINN_BENCH_PROFILE.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pinn.analysis.claims import summarise
from pinn.training.config import DEVICES
from pinn.analysis.report import format_summary
from pinn.training.threads import apply_thread_policy
from reference.cases import CASES
from reference.store import check_writable

from .profiles import PROFILES, get_profile
from .runner import with_methods

_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("pinn-bench")
    group.addoption("--profile", default=None,
                    help=f"benchmark profile, one of {sorted(PROFILES)} "
                         "(default: $PINN_BENCH_PROFILE or smoke)")
    group.addoption("--device", default="cpu", help=f"training device, one of {list(DEVICES)}")
    group.addoption("--case", action="append", default=None,
                    help="run only these systems (repeatable)")
    group.addoption("--method", action="append", default=None,
                    help="benchmark these methods OPTIMIZER+BALANCING instead of the profile's "
                         "(repeatable; either part may be an import path package.module:Class)")
    group.addoption("--optimizer-args", action="append", default=None, metavar="NAME=JSON",
                    help="keyword arguments of an optimizer of --method, as a JSON object "
                         "(repeatable)")
    group.addoption("--balancing-args", action="append", default=None, metavar="NAME=JSON",
                    help="keyword arguments of a balancer of --method (repeatable)")
    group.addoption("--reference-root", default="data",
                    help="folder of the stored references (default data)")


def _named_arguments(texts) -> dict | None:
    """``NAME=JSON`` options as {NAME: the JSON object} (NAME may hold ':' but not '=')."""
    if texts is None:
        return None
    parsed = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            parsed[name] = None
        if not sep or not name or not isinstance(parsed[name], dict):
            raise pytest.UsageError(f"expected NAME={{JSON object}}, got {text!r}")
    return parsed


def _profile(config):
    name = config.getoption("--profile") or os.environ.get("PINN_BENCH_PROFILE", "smoke")
    try:
        return with_methods(get_profile(name), config.getoption("--method"),
                            _named_arguments(config.getoption("--optimizer-args")),
                            _named_arguments(config.getoption("--balancing-args")))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def pytest_configure(config):
    profile = _profile(config)
    device = config.getoption("--device")
    if device not in DEVICES:
        raise pytest.UsageError(f"unknown device {device!r}; valid devices: {list(DEVICES)}")
    for name in config.getoption("--case") or ():
        if name not in profile.couplings:
            raise pytest.UsageError(
                f"unknown case {name!r} for profile {profile.name!r}; "
                f"valid cases: {sorted(profile.couplings)}"
            )
    try:
        apply_thread_policy()  # one thread per process (pinn.training.threads)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    _check_json_output(config.getoption("benchmark_json", None))
    config.stash[_RESULTS] = []
    config.pluginmanager.register(StudyProgress(config, profile), "pinn-study-progress")


def _check_json_output(path) -> None:
    """pytest-benchmark writes --benchmark-json only after the last benchmark: a path it
    cannot write would lose the whole study, so it is checked (and its folder made) first."""
    if path is None:
        return
    path = Path(path)
    try:
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give a file name, e.g. {path / 'out.json'}")
        check_writable(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise pytest.UsageError(f"--benchmark-json: {err}") from None


def pytest_report_header(config):
    profile = _profile(config)
    runs = sum(1 for _ in profile.runs())
    batches = sum(1 for _ in profile.batches())
    return (f"pinn-bench profile {profile.name!r}: {profile.description}; {runs} runs in "
            f"{batches} batches; device {config.getoption('--device')}")


def pytest_generate_tests(metafunc):
    if "batch_spec" not in metafunc.fixturenames:
        return
    profile = _profile(metafunc.config)
    only = metafunc.config.getoption("--case")
    specs = [spec for spec in profile.batches() if not only or spec[0] in only]
    ids = [f"{case}-{optimizer}+{balancing}" for case, optimizer, balancing, _ in specs]
    metafunc.parametrize("batch_spec", specs, ids=ids)


# --- progress over the whole study -------------------------------------------------------
class StudyProgress:
    """After each benchmark one line: batches and work done, time so far, and an estimate of
    the time to go. Work is counted as runs x steps x points x networks x width^2 x depth
    (the matmul volume of a step), and the estimate extrapolates the seconds per unit of
    work seen so far: rough across systems of different cost, better as the study goes on."""

    def __init__(self, config, profile):
        self.config, self.profile = config, profile
        self.work, self.done, self.batches, self.start = {}, 0.0, 0, None

    def _work(self, spec) -> float:
        from pinn.training.recipe import recipe

        case, _, _, runs = spec
        budget = self.profile.budgets[case]
        points = budget.n_points or recipe(case).n_points
        return (len(runs) * budget.steps * points * len(CASES[case].fields)
                * budget.width ** 2 * budget.depth)

    def pytest_collection_modifyitems(self, items):
        self.work = {item.nodeid: self._work(item.callspec.params["batch_spec"])
                     for item in items
                     if hasattr(item, "callspec") and "batch_spec" in item.callspec.params}

    def pytest_runtest_setup(self, item):
        if self.start is None and item.nodeid in self.work:
            self.start = time.perf_counter()

    def pytest_runtest_logreport(self, report):
        if report.when != "call" or report.nodeid not in self.work or self.start is None:
            return
        self.done += self.work[report.nodeid]
        self.batches += 1
        total = sum(self.work.values())
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (total - self.done)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.batches < len(self.work):
            reporter.write_line(
                f"\nstudy: {self.batches} of {len(self.work)} batches, "
                f"{100 * self.done / total:.0f} % of the work, {elapsed / 60:.1f} min so far, "
                f"about {left / 60:.1f} min to go")


@pytest.fixture(scope="session")
def profile(pytestconfig):
    return _profile(pytestconfig)


@pytest.fixture(scope="session")
def device(pytestconfig):
    return pytestconfig.getoption("--device")


@pytest.fixture(scope="session")
def reference_root(pytestconfig):
    return pytestconfig.getoption("--reference-root")


@pytest.fixture
def record(pytestconfig):
    """Collects each run's extra_info for the end-of-session summary."""
    return pytestconfig.stash[_RESULTS].append


def pytest_benchmark_update_json(config, benchmarks, output_json):
    profile = _profile(config)
    entries = [run for bench in output_json["benchmarks"]
               for run in bench["extra_info"].get("runs", [])]
    output_json["pinn_bench"] = {
        "profile": profile.name,
        "claim_ratio": profile.claim_ratio,
        "converged_l2": profile.converged_l2,
        "deferred": profile.deferred,
        "summary": summarise(entries, claim_ratio=profile.claim_ratio,
                             converged_l2=profile.converged_l2),
    }


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    profile = _profile(config)
    terminalreporter.section(f"coupling robustness ({profile.name} profile)")
    summary = summarise(results, claim_ratio=profile.claim_ratio,
                        converged_l2=profile.converged_l2)
    terminalreporter.write_line(format_summary(summary, deferred=profile.deferred,
                                               converged_l2=profile.converged_l2))
    terminalreporter.write_line("A verdict holds for this profile's budget only; the study over "
                                "seeds and schedules is docs/results.md.")
