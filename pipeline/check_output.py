"""How `pipeline check` reports: text for people, JSON for scripts, JUnit XML for CI servers
(Jenkins, GitLab, Azure DevOps), and GitHub Actions annotations plus a step summary."""

from __future__ import annotations

import contextlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.checks import CheckResult
from pipeline.errors import ConfigError
from pipeline.printable import markdown_cell, printable

# What XML 1.0 cannot hold: most C0 control characters, U+FFFE and U+FFFF (and lone
# surrogates, which no text from PostgreSQL holds).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """A sample value may hold what XML 1.0 cannot: each such character as U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def _github_escape(text: str, property_: bool = False) -> str:
    """GitHub's workflow-command escaping (properties also escape : and ,)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def _samples(result: CheckResult) -> str:
    if not result.samples:
        return ""
    more = " ..." if result.failing > len(result.samples) else ""
    return " (" + "; ".join(result.samples) + more + ")"


def render_text(results: list[CheckResult]) -> str:
    """One line per check and shard, failures first."""
    lines = []
    for r in results:
        what = f"{r.failing} failing" if not r.passed else "ok"
        # A sample is a value a shard holds: a row written by hand may hold a newline, an ESC.
        lines.append(printable(
            f"{r.status.upper():4}  {r.level:5}  {r.name}  [{r.shard}]  {what}{_samples(r)}"
        ))  # fmt: skip
    failed = sum(r.status == "fail" for r in results)
    warned = sum(r.status == "warn" for r in results)
    lines.append(f"{len(results)} checks: {failed} failed, {warned} warnings")
    return "\n".join(lines) + "\n"


def render_json(results: list[CheckResult], show_samples: bool) -> str:
    return json.dumps([r.to_json(show_samples) for r in results], indent=2, default=str) + "\n"


def render_junit(results: list[CheckResult], warn_error: bool) -> str:
    """One testcase per check and shard; errors (and, with --warn-error, warnings) fail."""
    failing = [r for r in results if r.status == "fail" or (warn_error and r.status == "warn")]
    suites = ET.Element("testsuites", name="pipeline check")
    suite = ET.SubElement(
        suites, "testsuite", name="pipeline check", tests=str(len(results)),
        failures=str(len(failing)), errors="0", skipped="0",
    )  # fmt: skip
    for r in results:
        case = ET.SubElement(
            suite, "testcase", classname=_xml_safe(f"shard.{r.shard}"), name=_xml_safe(r.name)
        )
        message = f"{r.failing} failing, expected {r.threshold}{_samples(r)}"
        if r in failing:
            failure = ET.SubElement(case, "failure", message=_xml_safe(message), type=r.level)
            failure.text = _xml_safe(r.sql)
        elif r.status == "warn":
            ET.SubElement(case, "system-out").text = _xml_safe(f"warning: {message}")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def render_github(results: list[CheckResult], warn_error: bool, summary: Path | None) -> str:
    """::error / ::warning annotations; a Markdown table appended to $GITHUB_STEP_SUMMARY."""
    lines = []
    for r in results:
        if r.passed:
            continue
        command = "error" if r.status == "fail" or warn_error else "warning"
        title = _github_escape(f"check {r.name} on {r.shard}", property_=True)
        lines.append(
            f"::{command} title={title}::{_github_escape(f'{r.failing} failing{_samples(r)}')}"
        )
    if summary is not None:
        table = ["| status | check | shard | failing | samples |", "|---|---|---|---|---|"]
        table += [
            f"| {r.status} | {r.name} | {r.shard} | {r.failing} | "
            + markdown_cell("; ".join(r.samples[:5]))
            + " |"
            for r in results
        ]
        try:
            with summary.open("a", encoding="utf-8") as stream:
                stream.write("## pipeline check\n\n" + "\n".join(table) + "\n\n")
        except OSError as exc:
            raise ConfigError(
                f"GITHUB_STEP_SUMMARY {summary}: cannot write: {exc.strerror}"
            ) from None
    return "\n".join(lines) + ("\n" if lines else "")


FORMATS = {".txt": "text", ".json": "json", ".xml": "junit"}  # by -o's extension
NOT_RUN = "pipeline check"  # the name of the one result that says the checks could not run


def render_error(message: str, fmt: str, github_summary: Path | None = None) -> str:
    """The report of a run whose checks could not run (exit 2): one failing entry that says
    why, so that CI reading the report sees a failure, not a missing file."""
    why = f"the checks could not run: {message}"
    if fmt == "json":
        record = {"name": NOT_RUN, "kind": "error", "shard": "*", "level": "error",
                  "status": "error", "error": why}  # fmt: skip
        return json.dumps([record], indent=2) + "\n"
    if fmt == "junit":
        suites = ET.Element("testsuites", name=NOT_RUN)
        suite = ET.SubElement(
            suites, "testsuite", name=NOT_RUN, tests="1", failures="0", errors="1", skipped="0"
        )
        case = ET.SubElement(suite, "testcase", classname="pipeline", name="check")
        ET.SubElement(case, "error", message=_xml_safe(why), type="error").text = _xml_safe(why)
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
    if fmt == "github":
        if github_summary is not None:
            # the ::error below reports it even when the summary cannot be written
            with contextlib.suppress(OSError), github_summary.open("a", encoding="utf-8") as out:
                out.write(f"## pipeline check\n\n{why}\n\n")
        title = _github_escape(NOT_RUN, property_=True)
        return f"::error title={title}::{_github_escape(why)}\n"
    return f"ERROR  {why}\n"


def render(
    results: list[CheckResult],
    fmt: str,
    warn_error: bool,
    show_samples: bool,
    github_summary: Path | None = None,
) -> str:
    """The results as text, json, junit or github annotations (plus, for github, a Markdown
    table appended to `github_summary` when given)."""
    if fmt == "json":
        return render_json(results, show_samples)
    if fmt == "junit":
        return render_junit(results, warn_error)
    if fmt == "github":
        return render_github(results, warn_error, github_summary)
    return render_text(results)
