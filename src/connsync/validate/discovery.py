"""Find the connection files, and say why anything could not be looked at.

Nothing drops out of view silently: ``apply --prune`` deletes what it cannot
see, so an unreadable directory, a FIFO, a device, a symlink whose target is
outside the repository (or nowhere), a directory loop or an absurdly deep tree
each becomes a finding with its path, and plan and apply refuse to act while
one exists. A symlink inside the repository is resolved once, here: the rest
of connsync sees the real path and never follows a link again. Nothing outside
the boundary (the repository, or a directory the user named explicitly) is
ever opened.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connsync.errors import ConfigError, UsageError
from connsync.model import Finding
from connsync.validate.loader import YAML_SUFFIXES, display_path

# Far deeper than any real layout; a bound, where an unbounded walk would crash.
MAX_DEPTH = 32
_SPECIAL = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}
# Unicode categories that have no business in a name: controls, format characters
# (zero-width, bidi overrides, BOM), line/paragraph separators, lone surrogates
# (undecodable bytes in a file name).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_UNNAMED = {"Cc": "a control character", "Cs": "an undecodable byte"}


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)  # real paths, each once
    findings: list[Finding] = field(default_factory=list)


def hidden_character(value: str) -> str | None:
    """A description of the first control or format character in ``value``, if any."""
    if value.isprintable():  # the common case, at C speed: every hidden category is unprintable
        return None
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        if category in HIDDEN_CATEGORIES:
            name = unicodedata.name(char, "") or _UNNAMED.get(category, "a format character")
            return f"U+{ord(char):04X} ({name}) at position {index + 1}"
    return None


def _real(path: Path) -> Path | str:
    """The real path of ``path``, or why there is none."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        return "a symlink loop" if exc.errno == 40 else f"a broken symlink ({exc.strerror})"
    except RuntimeError:
        return "a symlink loop"


class _Walk:
    def __init__(self, boundary: Path) -> None:
        self.boundary = boundary
        self.result = Discovery()
        self.seen_files: set[Path] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def finding(self, path: Path, rule: str, message: str) -> None:
        self.result.findings.append(Finding("error", rule, display_path(path), 1, 1, "$", message))

    def add_file(self, real: Path, shown: Path) -> None:
        bad = hidden_character(str(shown)) and hidden_character(display_path(shown))
        if bad:
            self.finding(shown, "file-name", f"the file name contains {bad}; rename the file")
        elif real not in self.seen_files:
            self.seen_files.add(real)
            self.result.files.append(real)

    def follow(self, link: Path) -> tuple[Path, os.stat_result] | None:
        """The target of a symlink, if it may be read; else a finding."""
        target = _real(link)
        if isinstance(target, str):
            self.finding(link, "symlink", f"{target}: what it pointed to cannot be checked")
            return None
        if not target.is_relative_to(self.boundary):
            # Never opened: its content would be quoted in findings and applied.
            self.finding(link, "symlink", "a symlink to a path outside the repository; not followed")
            return None
        try:
            return target, target.stat()
        except OSError as exc:
            self.finding(link, "unreadable", f"cannot read: {exc.strerror}")
            return None

    def walk(self, top: Path) -> None:
        stack: list[tuple[Path, int]] = [(top, 0)]
        self.seen_dirs.add(_dir_key(top))
        while stack:
            directory, depth = stack.pop()
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                self.finding(directory, "unreadable", f"cannot read directory: {exc.strerror}")
                continue
            for entry in entries:
                self.visit(entry, directory, depth, stack)

    def visit(self, entry: os.DirEntry[str], parent: Path, depth: int, stack: list[tuple[Path, int]]) -> None:
        path = Path(entry.path)
        try:
            # The directory listing already says which entries are plain files: no stat for them.
            if entry.is_file(follow_symlinks=False):
                if path.suffix in YAML_SUFFIXES:
                    self.add_file(path, path)
                return
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            self.finding(path, "unreadable", f"cannot read: {exc.strerror}")
            return
        real = path
        if stat.S_ISLNK(info.st_mode):
            followed = self.follow(path)
            if followed is None:
                return
            real, info = followed
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if real != path and (parent == real or parent.is_relative_to(real)):
                self.finding(path, "directory-loop", "a symlink to a directory that contains it")
            elif depth + 1 > MAX_DEPTH:
                self.finding(path, "too-deep", f"directories nested more than {MAX_DEPTH} levels deep "
                             "are not searched; flatten the layout")
            elif key not in self.seen_dirs:  # a directory reached twice is searched once
                self.seen_dirs.add(key)
                stack.append((real, depth + 1))
        elif stat.S_ISREG(info.st_mode):
            if path.suffix in YAML_SUFFIXES:
                self.add_file(real, path)
        else:
            self.special(path, info)

    def special(self, path: Path, info: os.stat_result) -> None:
        kind = _SPECIAL.get(stat.S_IFMT(info.st_mode), "a special file")
        self.finding(path, "not-a-file", f"{kind}, not a regular file; connection files are plain files")


def _within(path: Path, directory: Path) -> bool:
    """Whether ``path`` lies in ``directory``, as written or with its symlinks resolved."""
    return (Path(os.path.abspath(path)).is_relative_to(os.path.abspath(directory))
            or Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory)))


def _dir_key(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def discover(paths: Sequence[str | Path], default_dir: Path, root: Path | None = None) -> Discovery:
    """The files named by PATH arguments (or under the default directory), and what could not be seen.

    ``root`` is the repository (the directory of connsync.yaml): a symlink may
    not lead out of it. A path the user names outside ``default_dir`` is a
    finding, never read: every command acts on the connections directory's files only.
    """
    repository = Path(os.path.realpath(root or Path.cwd()))
    walk = _Walk(repository)
    for start in [Path(p) for p in paths] or [default_dir]:
        if not os.path.lexists(start):
            if paths:
                raise UsageError(f"{start}: no such file or directory")
            # Planning an absent directory would read as "every record is orphaned".
            raise ConfigError(
                f"no connections directory at {display_path(start)}",
                hint="run 'connsync init', or set 'connections:' in connsync.yaml",
            )
        if paths and not _within(start, default_dir):
            # One rule for every command: a stored record's source is a file of the connections
            # directory, so no record can be the "orphan" of a file that still exists elsewhere.
            walk.finding(start, "outside-connections",
                         f"outside the connections directory {display_path(default_dir)}: connsync "
                         "validates, verifies, plans and applies only the files in it")
            continue
        # Where the path itself lives (its parent resolved), to tell inside from outside.
        located = Path(os.path.realpath(start.parent)) / start.name
        walk.boundary = repository if located.is_relative_to(repository) else Path(os.path.realpath(start))
        if not located.is_relative_to(repository) and not start.is_dir():
            walk.boundary = walk.boundary.parent
        if start.is_symlink():
            followed = walk.follow(start)
            if followed is None:
                continue
            real, info = followed
        else:
            try:
                real, info = located, start.stat()
            except OSError as exc:
                walk.finding(start, "unreadable", f"cannot read: {exc.strerror}")
                continue
        if stat.S_ISDIR(info.st_mode):
            walk.walk(real)
        elif stat.S_ISREG(info.st_mode):
            walk.add_file(real, start)
        else:
            walk.special(start, info)
    walk.result.files.sort()
    return walk.result
