"""Atomic output files: written under a temporary name, moved into place only on success."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pan360.errors import Pan360Error


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # catches symlinks and hard links
    except OSError:
        return a.resolve() == b.resolve()


def check_output(final_path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work is done; returns it as a Path.

    Raises
    ------
    Pan360Error : the output is one of the inputs (even with ``overwrite``), exists and ``overwrite``
        is False, is a directory, or its directory does not exist.
    """
    final = Path(final_path)
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise Pan360Error(f"output directory does not exist: {parent}")
    for inp in inputs:
        if _same_file(final, Path(inp)):
            raise Pan360Error(f"output {final} is the same file as the input; choose another output name")
    if final.is_dir():
        raise Pan360Error(f"output {final} is a directory")
    if final.exists() and not overwrite:
        raise Pan360Error(f"output {final} already exists (use --overwrite to replace it)")
    return final


def _temporary_name(final: Path) -> Path:
    """Create an empty hidden file ``.name.tmp-XXXXXXXX.ext`` next to ``final`` (umask applies)."""
    for _ in range(100):
        tmp = final.with_name(f".{final.stem}.tmp-{secrets.token_hex(4)}{final.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise Pan360Error(f"cannot create a file in {final.parent}: {exc.strerror}") from exc
    raise Pan360Error(f"cannot create a temporary file in {final.parent}")


@contextmanager
def atomic_output(
    final_path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path in the output's directory; rename it to ``final_path`` on success.

    The temporary file has the same extension (so muxers pick the right format) and a hidden name.
    On any exception, KeyboardInterrupt included, it is removed and ``final_path`` is left untouched.
    The same checks as :func:`check_output` run first.
    """
    final = check_output(final_path, overwrite=overwrite, inputs=inputs)
    tmp = _temporary_name(final)
    mode = tmp.stat().st_mode & 0o777  # a new file's mode under the umask
    try:
        yield tmp
        if not tmp.exists():
            raise Pan360Error(f"nothing was written to {final}")
        # Some writers (safetensors) replace the file with a 0600 one: give the output that mode back.
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:  # the data on disk before the name points at it (a crash leaves old or new)
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
