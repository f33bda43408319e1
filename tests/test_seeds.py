"""crawler.seeds: seed lines to canonical URLs and per-line problems, streamed."""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.errors import SeedFileError, UsageError
from crawler.seeds import (
    MAX_LINE_BYTES,
    TEXT_CHECK_BYTES,
    Seed,
    SeedProblem,
    parse_seed_lines,
    read_seed_file,
)


def _split(items: list[Seed | SeedProblem]) -> tuple[list[Seed], list[SeedProblem]]:
    seeds = [item for item in items if isinstance(item, Seed)]
    problems = [item for item in items if isinstance(item, SeedProblem)]
    return seeds, problems


def _write(tmp_path: Path, content: bytes, name: str = "seeds.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------------------------
# parse_seed_lines
# --------------------------------------------------------------------------------------------


def test_urls_become_canonical_seeds_with_line_numbers() -> None:
    lines = [
        "# my seeds\n",
        "\n",
        "HTTP://Example.COM:80/a/../b#frag\n",
        "   \t  \n",
        "  https://example.org  \n",
        "    # an indented comment\n",
        "https://bücher.example/ü\n",
    ]
    assert list(parse_seed_lines(lines)) == [
        Seed(3, "http://example.com/b"),
        Seed(5, "https://example.org/"),
        Seed(7, "https://xn--bcher-kva.example/%C3%BC"),
    ]


def test_bom_crlf_and_lines_without_line_ends() -> None:
    lines = ["\ufeffhttp://a.example/\r\n", "http://b.example/\r\n", "http://c.example/"]
    seeds, problems = _split(list(parse_seed_lines(lines)))
    assert [seed.url for seed in seeds] == [
        "http://a.example/",
        "http://b.example/",
        "http://c.example/",
    ]
    assert problems == []


def test_bom_alone_on_the_first_line_is_a_blank_line() -> None:
    assert list(parse_seed_lines(["\ufeff\n", "http://a.example/\n"])) == [
        Seed(2, "http://a.example/")
    ]


def test_duplicates_are_kept_for_the_database_to_merge() -> None:
    lines = ["http://a.example/", "HTTP://A.EXAMPLE:80/", "http://a.example/#x"]
    assert [item.url for item in parse_seed_lines(lines) if isinstance(item, Seed)] == [
        "http://a.example/"
    ] * 3


@pytest.mark.parametrize(
    "line",
    [
        "example.com",
        "www.example.com/page",
        "/relative/path",
        "../up",
        "//example.com/no-scheme",
        "file:///etc/passwd",
        "ftp://ftp.example.com/pub",
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "http://",
        "https://exa<mple.com/",
        "\x00\x00\x00",
    ],
)
def test_lines_that_are_not_http_urls_are_problems(line: str) -> None:
    [problem] = list(parse_seed_lines(["http://ok.example/", line], source="seed.txt"))[1:]
    assert isinstance(problem, SeedProblem)
    assert problem.line_no == 2
    assert problem.reason == "not an absolute http(s) URL"
    assert problem.text == line.strip()
    assert problem.source == "seed.txt"


def test_problem_str_is_the_line_the_cli_prints() -> None:
    [problem] = list(
        parse_seed_lines(
            ["", "# c", "", "", "", "", "", "", "", "", "", "foo/bar"], source="seed.txt"
        )
    )
    assert str(problem) == "seed.txt:12: not an absolute http(s) URL: 'foo/bar'"
    assert str(SeedProblem(3, "a\x1b[2Jb", "not an absolute http(s) URL")) == (
        "<seeds>:3: not an absolute http(s) URL: 'a\\x1b[2Jb'"  # control characters escaped
    )


def test_whitespace_inside_a_line_is_a_problem() -> None:
    items = list(parse_seed_lines(["http://a.example/ http://b.example/", "http://a.example/\tx"]))
    assert [(p.line_no, p.reason) for p in items if isinstance(p, SeedProblem)] == [
        (1, "whitespace inside the URL"),
        (2, "whitespace inside the URL"),
    ]


def test_credentials_are_masked_in_problem_text_and_refused_in_seeds() -> None:
    # A seed with credentials would put them in the database in clear: refused, masked.
    lines = [
        "ftp://user:hunter2@files.example/",
        "http://user:hunter2@exa mple.com/",
        "https://token123@example.com/private",
    ]
    seeds, problems = _split(list(parse_seed_lines(lines)))
    assert seeds == []
    assert len(problems) == 3
    assert all("hunter2" not in str(p) and "token123" not in str(p) for p in problems)
    assert problems[2].text == "https://***@example.com/private"


def test_problem_text_is_shortened() -> None:
    line = "relative/" + "x" * 500
    [problem] = list(parse_seed_lines([line]))
    assert isinstance(problem, SeedProblem)
    assert len(problem.text) == 120
    assert problem.text.endswith("…")
    assert problem.text.startswith("relative/xxx")


def test_overlong_decoded_line_is_a_problem() -> None:
    line = "http://example.com/" + "a" * MAX_LINE_BYTES
    items = list(parse_seed_lines([line, "http://ok.example/"]))
    assert isinstance(items[0], SeedProblem)
    assert items[0].reason == f"line longer than {MAX_LINE_BYTES} characters"
    assert len(items[0].text) <= 120
    assert items[1] == Seed(2, "http://ok.example/")


def test_parse_seed_lines_is_lazy() -> None:
    def lines() -> Iterator[str]:
        yield "http://a.example/"
        raise AssertionError("read past what was asked for")

    assert next(parse_seed_lines(lines())) == Seed(1, "http://a.example/")


# --------------------------------------------------------------------------------------------
# read_seed_file
# --------------------------------------------------------------------------------------------


def test_read_seed_file_handles_bom_crlf_comments_and_blanks(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        b"\xef\xbb\xbfhttp://a.example/\r\n"
        b"# comment\r\n"
        b"\r\n"
        b"   https://b.example/x   \r\n"
        b"relative/path\r\n"
        b"http://c.example",  # no line end at the end of the file
    )
    items = list(read_seed_file(path))
    assert items == [
        Seed(1, "http://a.example/"),
        Seed(4, "https://b.example/x"),
        SeedProblem(5, "relative/path", "not an absolute http(s) URL", str(path)),
        Seed(6, "http://c.example/"),
    ]
    assert str(items[2]) == f"{path}:5: not an absolute http(s) URL: 'relative/path'"


def test_read_seed_file_accepts_str_paths(tmp_path: Path) -> None:
    path = _write(tmp_path, b"http://a.example/\n")
    assert list(read_seed_file(str(path))) == [Seed(1, "http://a.example/")]


def test_empty_file_gives_nothing(tmp_path: Path) -> None:
    assert list(read_seed_file(_write(tmp_path, b""))) == []


def test_line_over_64_kib_is_a_problem_and_reading_goes_on(tmp_path: Path) -> None:
    long_line = b"http://example.com/" + b"a" * (70 * 1024)
    path = _write(tmp_path, b"http://first.example/\n" + long_line + b"\nhttp://after.example/\n")
    items = list(read_seed_file(path))
    assert items[0] == Seed(1, "http://first.example/")
    assert isinstance(items[1], SeedProblem)
    assert items[1].line_no == 2
    assert items[1].reason == f"line longer than {MAX_LINE_BYTES} bytes"
    assert items[1].text.startswith("http://example.com/aaa")
    assert len(items[1].text) == 120
    assert items[2] == Seed(3, "http://after.example/")


def test_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    url = b"http://example.com/" + b"a" * (MAX_LINE_BYTES - len(b"http://example.com/"))
    assert len(url) == MAX_LINE_BYTES
    path = _write(tmp_path, url + b"\n" + url)
    items = list(read_seed_file(path))
    assert [type(item) for item in items] == [Seed, Seed]


def test_huge_line_is_never_held_whole(tmp_path: Path) -> None:
    path = _write(tmp_path, b"x" * (16 * 1024 * 1024) + b"\nhttp://after.example/\n")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        items = list(read_seed_file(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [item.line_no for item in items] == [1, 2]
    assert isinstance(items[0], SeedProblem)
    assert items[1] == Seed(2, "http://after.example/")
    assert peak < 1024 * 1024, f"peak {peak} bytes for a 16 MiB line"


def test_invalid_utf8_line_is_a_problem(tmp_path: Path) -> None:
    path = _write(
        tmp_path, b"http://a.example/\nhttp://b.example/\xff\xfe\nhttp://c.example/caf\xc3\xa9\n"
    )
    items = list(read_seed_file(path))
    assert items[0] == Seed(1, "http://a.example/")
    assert isinstance(items[1], SeedProblem)
    assert items[1].reason == "not valid UTF-8"
    assert items[1].text == "http://b.example/\ufffd\ufffd"
    assert items[2] == Seed(3, "http://c.example/caf%C3%A9")


def test_invalid_utf8_problem_masks_credentials(tmp_path: Path) -> None:
    path = _write(tmp_path, b"http://u:secret@h.example/\xff\n")
    [problem] = list(read_seed_file(path))
    assert isinstance(problem, SeedProblem)
    assert "secret" not in problem.text


@pytest.mark.parametrize(
    "content",
    [
        b"\x00" * 200_000,  # NUL-filled, no line end: one over-long line
        b"\x00" * 1000 + b"\n" + b"\x00" * 10,
        bytes(range(256)) * 300,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 50,
        b"\xff\xfeh\x00t\x00t\x00p\x00:\x00/\x00/\x00a\x00\n\x00",  # UTF-16
    ],
)
def test_binary_file_is_refused_whole_at_the_call(tmp_path: Path, content: bytes) -> None:
    """A NUL byte in the first block: one SeedFileError, not a problem for each line of junk."""
    path = _write(tmp_path, content, "binary.bin")
    with pytest.raises(SeedFileError) as info:
        read_seed_file(path)
    message = str(info.value)
    assert message.startswith(f"seed file {str(path)!r} is not text (")
    assert message.endswith("): give one URL per line")
    if content.startswith(b"\xff\xfe"):
        assert "UTF-16; save it as UTF-8" in message


def test_nul_byte_position_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, b"http://a.example/\n\x00\n")
    with pytest.raises(SeedFileError, match=r"is not text \(a NUL byte at byte 18\)"):
        read_seed_file(path)


def test_only_the_first_block_is_looked_at(tmp_path: Path) -> None:
    """A NUL past the first 8 KiB is one bad line, as any other junk line: the check costs one
    block and the file is still read as a stream."""
    first = b"http://a.example/\n" + b"#" * (TEXT_CHECK_BYTES - 19) + b"\n"
    assert len(first) == TEXT_CHECK_BYTES
    path = _write(tmp_path, first + b"\x00junk\nhttp://b.example/\n")
    items = list(read_seed_file(path))
    assert items[0] == Seed(1, "http://a.example/")
    assert isinstance(items[1], SeedProblem)
    assert items[1].line_no == 3
    assert items[2] == Seed(4, "http://b.example/")


def test_text_in_another_encoding_is_read_line_by_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "# café\nhttp://a.example/\nhttp://b.example/é\n".encode("latin-1"))
    items = list(read_seed_file(path))
    assert [type(item) for item in items] == [SeedProblem, Seed, SeedProblem]
    assert {item.reason for item in items if isinstance(item, SeedProblem)} == {"not valid UTF-8"}


def test_a_pipe_is_read_after_the_text_check(tmp_path: Path) -> None:
    """The check peeks at the buffer instead of reading and seeking back, so a FIFO (a shell's
    ``<(...)``) still gives every line."""
    fifo = tmp_path / "seeds.fifo"
    os.mkfifo(fifo)
    lines = b"".join(b"http://h%d.example/\n" % i for i in range(3000))  # more than one block
    writer = threading.Thread(target=fifo.write_bytes, args=(lines,))
    writer.start()
    try:
        items = list(read_seed_file(fifo))
    finally:
        writer.join()
    assert [item.line_no for item in items] == list(range(1, 3001))
    assert all(isinstance(item, Seed) for item in items)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(SeedFileError) as info:
        read_seed_file(path)  # raised at the call, before any iteration
    assert str(info.value) == f"cannot read seed file {str(path)!r}: No such file or directory"
    assert isinstance(info.value, UsageError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SeedFileError, match=r"^cannot read seed file .*: Is a directory$"):
        read_seed_file(tmp_path)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root reads a chmod 000 file anyway; the directory case covers the same path",
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path, b"http://a.example/\n")
    path.chmod(0)
    try:
        with pytest.raises(SeedFileError, match=r"^cannot read seed file .*: Permission denied$"):
            read_seed_file(path)
    finally:
        path.chmod(0o644)


def test_the_file_is_closed_when_iteration_ends(tmp_path: Path) -> None:
    path = _write(tmp_path, b"http://a.example/\nhttp://b.example/\n")
    items = read_seed_file(path)
    assert next(items) == Seed(1, "http://a.example/")
    items.close()
    with pytest.raises(StopIteration):
        next(items)


def test_a_million_lines_stream_in_bounded_memory(tmp_path: Path) -> None:
    """The file is written from a generator and read back with tracemalloc watching.

    Mostly comment and blank lines, so the test stays fast under tracemalloc; every 100th line
    is a URL and every 1000th is bad, so all three paths run all along the file.
    """

    def lines() -> Iterator[bytes]:
        for i in range(1_000_000):
            if i % 1000 == 999:
                yield b"not/a/url/%d\n" % i
            elif i % 100 == 0:
                yield b"https://host%d.example/page/%d?q=%d\n" % (i % 97, i, i)
            elif i % 2:
                yield b"# comment %d\n" % i
            else:
                yield b"\n"

    path = tmp_path / "million.txt"
    with path.open("wb") as handle:
        handle.writelines(lines())

    seeds = problems = last_line = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for item in read_seed_file(path):
            last_line = item.line_no
            if isinstance(item, Seed):
                seeds += 1
            else:
                problems += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (seeds, problems, last_line) == (10_000, 1_000, 1_000_000)
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while streaming 1,000,000 lines"
