"""What ``redesdl get`` shows, on fakes: the progress line, the summary, -v lines."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel

from redesdl.central.console import CentralCommands
from redesdl.client.cli import LogDisplay
from redesdl.client.listing import TextListing, describe_result
from redesdl.client.options import build_parser
from redesdl.client.progress import ProgressLine, describe_progress, shorten
from redesdl.transfer.result import DownloadResult

LONG = "videos/holidays/2024/a_very_long_name_for_a_clip.mp4"
MiB = 1024 * 1024


def job(name: str = LONG, fetched: int = 0, reused: int = 0, size: int = 100 * MiB):
    download = SimpleNamespace(
        bytesDone=fetched,
        bytesReused=reused,
        info=SimpleNamespace(size=size),
        liveSources=["s1", "s2", "s3"],
        fetchStarted=10.0,
    )
    return SimpleNamespace(
        name=name, state="downloading", download=download, downloadStarted=0.0
    )


def test_the_line_fits_80_columns_with_the_name_shortened_in_the_middle() -> None:
    line = describe_progress(job(fetched=40 * MiB), 20.0, 79)
    assert len(line) <= 79
    assert line.startswith("videos/") and "…" in line and ".mp4: " in line
    assert "40%" in line and "ETA" in line and "3 sources" in line


def test_a_narrow_terminal_keeps_the_percentage_and_drops_the_rest_first() -> None:
    narrow = describe_progress(job(fetched=40 * MiB), 20.0, 30)
    assert len(narrow) <= 30 and "40%" in narrow and "sources" not in narrow
    tiny = describe_progress(job(fetched=40 * MiB), 20.0, 12)
    assert len(tiny) <= 12


def test_a_short_name_is_shown_whole() -> None:
    line = describe_progress(job(name="a.mp4", fetched=MiB), 20.0, 79)
    assert line.startswith("a.mp4:  ") or line.startswith("a.mp4: ")
    assert shorten("abcdefghij", 5) == "ab…ij"


def test_a_resumed_download_counts_reused_bytes_and_reaches_100() -> None:
    line = describe_progress(job(fetched=42 * MiB, reused=58 * MiB), 20.0, 200)
    assert "100%" in line and "100.0 MiB of 100.0 MiB" in line
    # The rate counts this run's 42 MiB over the 10 s spent fetching.
    assert "4.2 MiB/s" in line


def test_the_summary_rate_counts_fetched_bytes_and_says_what_was_reused() -> None:
    result = DownloadResult(
        name="c.mp4",
        path="c.mp4",
        size=100 * MiB,
        sha256="ab" * 32,
        seconds=12.0,
        bytes_fetched=40 * MiB,
        sources={"s1": 40 * MiB},
        bytes_reused=60 * MiB,
    )
    text = describe_result(result, fetch_seconds=10.0)
    assert "4.0 MiB/s" in text
    assert text.endswith("; 60.0 MiB reused from an earlier attempt")
    assert "waiting" not in text


def test_the_summary_says_how_long_the_download_waited_for_a_slot() -> None:
    result = DownloadResult(
        name="c.mp4",
        path="c.mp4",
        size=MiB,
        sha256="ab" * 32,
        seconds=2.0,
        bytes_fetched=MiB,
        sources={"s1": MiB},
        queued_seconds=8.04,
    )
    assert "in 2.00 s after 8.0 s waiting for a slot," in describe_result(result)


def test_the_summary_escapes_what_peers_and_paths_could_hide_in() -> None:
    """A source named by a rogue central, or a path with a bidi override,
    reaches the terminal escaped, not as commands or reordered text."""
    result = DownloadResult(
        name="c.mp4",
        path="invoice\u202efdp.exe",
        size=MiB,
        sha256="ab" * 32,
        seconds=2.0,
        bytes_fetched=MiB,
        sources={"\x1b]0;pwned\x07\x1b[2J\x9b": MiB},
    )
    text = describe_result(result)
    assert text.isprintable()
    assert "saved invoice\\u202efdp.exe " in text
    assert "from \\x1b]0;pwned\\x07\\x1b[2J\\x9b 1.0 MiB" in text


class Terminal(io.StringIO):
    """A stream whose terminal is as wide as C{columns}."""

    columns = 80

    def fileno(self) -> int:
        raise io.UnsupportedOperation


def test_lines_printed_while_the_progress_shows_are_never_glued_to_it(
    monkeypatch: Any,
) -> None:
    clock, stream = Clock(), Terminal()
    widths = iter([80, 40, 40, 40])
    monkeypatch.setattr(
        "redesdl.client.progress.terminal_width", lambda _: next(widths)
    )
    line = ProgressLine(job(fetched=MiB), stream, clock)
    line.start()
    line.above("redesdl: dropping source s1: cannot connect")
    line.stop()
    stream.write("saved c.mp4\n")
    out = stream.getvalue()
    # Cleared before the log line, redrawn after, cleared before the summary.
    assert "\r\x1b[Kredesdl: dropping source s1: cannot connect\n" in out
    assert out.endswith("\r\x1b[Ksaved c.mp4\n")
    drawn = [part for part in out.split("\r\x1b[K") if "ETA" in part]
    # The terminal shrank to 40 columns: the redraw followed it.
    assert len(drawn[0]) <= 79 and len(drawn[1]) <= 39


def test_verbose_output_hides_the_reactors_own_lines() -> None:
    shown: list[str] = []
    display = LogDisplay(verbose=True)
    display.show = shown.append
    base = {"log_format": "Main loop terminated.", "log_level": LogLevel.info}
    display({**base, "log_namespace": "twisted.internet.base"})
    display(
        {
            "log_format": "dropping source s1",
            "log_level": LogLevel.warn,
            "log_namespace": "redesdl.transfer.download.Download",
        }
    )
    assert shown == ["dropping source s1"]


def test_quiet_hides_notices_but_keeps_warnings() -> None:
    shown: list[str] = []
    display = LogDisplay(verbose=False, quiet=True)
    display.show = shown.append
    for level, text in ((LogLevel.info, "resuming"), (LogLevel.warn, "starting over")):
        display(
            {"log_format": text, "log_level": level, "log_namespace": "redesdl.notice"}
        )
    assert shown == ["starting over"]


def test_global_options_are_accepted_after_the_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["list", "--central", "h:1", "-v"])
    assert args.central == "h:1" and args.verbose
    args = parser.parse_args(["--central", "h:2", "get", "x", "--restart", "-o", "-"])
    assert args.central == "h:2" and args.restart and args.output == "-"
    assert not args.verbose


def test_the_listing_starts_with_a_header_row() -> None:
    entry = SimpleNamespace(
        info=SimpleNamespace(name="videos/a.mp4", size=3 * MiB, sha256="cd" * 32),
        sources=2,
    )
    text = TextListing(header=True).page([entry]).splitlines()
    assert text[0].split() == ["NAME", "SIZE", "SOURCES", "SHA256"]
    assert text[1].index("3.0 MiB") + len("3.0 MiB") == text[0].index("SIZE") + 4


def test_the_central_console_files_are_aligned_with_human_sizes() -> None:
    entries = [
        SimpleNamespace(
            name=name, info=SimpleNamespace(size=size, sha256="ef" * 32), sources=n
        )
        for name, size, n in (("a.mp4", 5 * MiB, 3), ("videos/long.mp4", 900, 1))
    ]
    factory = SimpleNamespace(registry=SimpleNamespace(names_after=lambda _: entries))
    lines = CentralCommands(factory).cmd_files([])  # type: ignore[arg-type]
    assert lines[0].split() == ["NAME", "SIZE", "SOURCES", "SHA256"]
    assert "5.0 MiB" in lines[1] and "900 B" in lines[2]
    assert len({line.index("efef") for line in lines[1:]}) == 1
