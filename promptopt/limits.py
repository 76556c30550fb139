"""Limits on what promptopt reads from files a user may have downloaded: task specs, sweep files,
data files and the paths they name.

Each limit is generous for real benchmarks and stops input made to exhaust memory or time (a YAML
alias bomb, a zip bomb, a line of gigabytes, a CSV of a million columns) before it is parsed, in
one sentence that names the file, the limit and the environment variable that raises it. Paths a
task file names (data files, images, id lists, corpora) must stay inside the task's folder (or its
data folder): a downloaded task cannot make promptopt read, and send to a model, a file elsewhere
on the machine, unless the user allows it with PROMPTOPT_ALLOW_OUTSIDE_PATHS=1.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from promptopt.errors import UserError

# name -> (default, environment variable, unit for the sentence)
# An item id's most characters: the store's key column (PostgreSQL enforces it), so a task's ids
# are refused as it loads and any other writer's when the store is written.
ID_CHARS = 200

LIMITS = {
    "yaml_bytes": (1_000_000, "PROMPTOPT_MAX_YAML_BYTES", "bytes"),
    "yaml_nodes": (1_000_000, "PROMPTOPT_MAX_YAML_NODES", "YAML nodes"),  # once aliases are expanded
    "line_bytes": (64_000_000, "PROMPTOPT_MAX_LINE_BYTES", "bytes"),
    "columns": (10_000, "PROMPTOPT_MAX_COLUMNS", "columns"),
    "unpacked_bytes": (8_000_000_000, "PROMPTOPT_MAX_UNPACKED_BYTES", "bytes"),
}
OUTSIDE = "PROMPTOPT_ALLOW_OUTSIDE_PATHS"
_BLOCK = 1 << 20


def limit(name: str) -> int:
    default, var, _ = LIMITS[name]
    raw = os.environ.get(var)
    if raw is None:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise UserError(f"{var}={raw!r} is not a limit; give a whole number of {LIMITS[name][2]}, 1 or more.")
    return value


def _over(what: str, found: str, name: str) -> UserError:
    default, var, unit = LIMITS[name]
    return UserError(f"{what} {found}; at most {limit(name):,} {unit} are read (set {var} to raise the limit).")


def check_yaml(path: Path, what: str) -> str:
    """The file's text, once its size, and its number of nodes with every alias expanded (what
    an alias bomb multiplies), are within the limits. Counted on the parser's events, so the
    document is never built, let alone expanded."""
    import yaml

    size = path.stat().st_size
    if size > limit("yaml_bytes"):
        raise _over(f"{what} {path}", f"is {size:,} bytes", "yaml_bytes")
    text = path.read_text()
    anchored: dict[str, int] = {}  # anchor -> nodes under it, expanded
    open_: list[list] = []  # per collection being read: [anchor, nodes so far]
    total, most = 0, limit("yaml_nodes")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, n = open_.pop()
                if anchor:
                    anchored[anchor] = n
                if open_:
                    open_[-1][1] += n
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                open_.append([event.anchor, 1])
                total += 1
                continue
            if not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                continue
            n = anchored.get(event.anchor, 1) if isinstance(event, yaml.AliasEvent) else 1
            if isinstance(event, yaml.ScalarEvent) and event.anchor:
                anchored[event.anchor] = 1
            total += n
            if open_:
                open_[-1][1] += n
            if total > most:
                raise _over(f"{what} {path}", f"expands to more than {most:,} YAML nodes (its aliases repeat them)",
                            "yaml_nodes")  # fmt: skip
    except yaml.YAMLError:
        pass  # the caller's own parse says what is wrong, in its sentence
    return text


def check_lines(path: Path, what: str, csv: bool = False) -> None:
    """Refuse a text data file with a line longer than the limit (read block by block, so the
    check itself never holds a long line), or a CSV whose header has too many columns."""
    longest = run = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            cut = block.find(b"\n")
            if cut < 0:
                run += len(block)
            else:
                longest = max(longest, run + cut)
                run = len(block) - block.rfind(b"\n") - 1
            if max(longest, run) > limit("line_bytes"):
                raise _over(f"{what}: {path}", "has a line longer than the limit", "line_bytes")
    if csv:
        with open(path, "rb") as f:
            header = f.readline(limit("line_bytes") + 1)
        columns = header.count(b",") + 1
        if columns > limit("columns"):
            raise _over(f"{what}: {path}", f"has {columns:,} columns", "columns")


def check_zip(path: Path, what: str) -> None:
    """Refuse a zip archive that is not one, or whose members unpack to more than the limit."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{what}: {path} is not a readable zip archive ({exc}).") from None
    if total > limit("unpacked_bytes"):
        raise _over(f"{what}: {path}", f"unpacks to {total:,} bytes", "unpacked_bytes")


def check_stream(path: Path, what: str) -> None:
    """Refuse a gzip, bzip2, xz or zstd file that unpacks to more than the limit: it is read
    through once, block by block, so the check never holds more than a block."""
    import bz2
    import gzip
    import lzma

    def zstd(p: Path):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), closefd=True)

    suffix = path.suffix.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": zstd}[suffix]
    total, most = 0, limit("unpacked_bytes")
    try:
        with opener(path) as f:
            while block := f.read(_BLOCK):
                total += len(block)
                if total > most:
                    raise _over(f"{what}: {path}", "unpacks to more than the limit", "unpacked_bytes")
    except UserError:
        raise
    except Exception as exc:  # a truncated or corrupt archive: its library says which
        raise UserError(f"{what}: {path} is not a readable {suffix[1:]} file ({type(exc).__name__}).") from None


def confined(path: Path, folder: Path, what: str) -> Path:
    """`path` (resolved, symlinks followed), refused when it lies outside `folder` unless the user
    allows paths outside with PROMPTOPT_ALLOW_OUTSIDE_PATHS=1."""
    resolved = Path(path).resolve()
    if os.environ.get(OUTSIDE) == "1" or resolved.is_relative_to(Path(folder).resolve()):
        return resolved
    raise UserError(
        f"{what} names {path}, which is outside {folder}; a task reads only files inside its own folder "
        f"(set {OUTSIDE}=1 to allow paths outside it)."
    )
