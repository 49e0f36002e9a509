"""Output files: all outputs of one command checked, claimed, written as temporaries, moved in together.

:class:`OutputSet` is the one place a command declares every file it reads (video, ``--path``,
``--weights`` and its JSON, annotation and truth files, pair folders) and every file it writes. Before
any work it refuses an output that is one of the inputs (hard and symbolic links included), one that
names the same file as another output, an existing one without ``overwrite``, a missing directory and,
for video outputs, an extension pan360 cannot write (:func:`pan360.media.video.container_for`).

On entering it claims every output: ``.NAME.pan360-lock`` beside it, flock(2)-locked and holding the
PID. A second run to the same output refuses at once (it does not wait); the kernel drops the lock of a
process however it ends, so a killed run's claim is stale and simply taken over. Each output is then
written under ``.STEM.tmp-PID-XXXXXXXX.EXT`` (same extension, so muxers pick the right format) and,
only when the whole command succeeded, every temporary is fsynced and renamed into place together. On
any exception, KeyboardInterrupt and SIGTERM/SIGHUP (see the CLI) included, all temporaries are removed
and no output is touched. Temporaries whose PID is dead (a SIGKILLed run) are removed by the next run
that claims the output, with a note.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pan360.errors import Pan360Error

LOCK_SUFFIX = ".pan360-lock"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # catches symlinks and hard links
    except OSError:
        return a.resolve() == b.resolve()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _temp_pattern(final: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(final.stem)}\.tmp-(\d+)-[0-9a-f]{{8}}{re.escape(final.suffix)}")


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held back (delivered on leaving) in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _cannot_create(parent: Path, exc: OSError) -> Pan360Error:
    return Pan360Error(f"cannot create a file in {parent}: {exc.strerror}")


@dataclass
class _Output:
    final: Path
    flag: str
    video: bool = False
    tmp: Path | None = None
    mode: int = 0o644
    lock: tuple[Path, int] | None = None


class OutputSet:
    """Every input and output of one command; a context manager that commits the outputs together.

    Use::

        files = OutputSet(overwrite=False)
        files.add_input("in.mp4", "video")
        files.add_output("out.mp4", "-o", video=True)
        with files:                         # checks and claims every output, before any work
            write_video(files.temp("out.mp4"))
        # here every output is in place, or (on any exception) none was touched

    ``notify`` receives the note about temporaries of killed runs that were removed.
    """

    def __init__(self, *, overwrite: bool = False, notify: Callable[[str], None] | None = None) -> None:
        self.overwrite = overwrite
        self._notify = notify
        self._inputs: list[tuple[Path, str]] = []
        self._outputs: list[_Output] = []

    def add_input(self, path: str | os.PathLike[str] | None, what: str = "") -> None:
        """A file (or folder) the command reads; None is ignored. ``what`` names it in messages."""
        if path is not None:
            self._inputs.append((Path(path), what))

    def add_output(self, path: str | os.PathLike[str] | None, flag: str = "output", *,
                   video: bool = False) -> Path | None:
        """A file the command writes (None is ignored); ``video``: also check its container extension."""
        if path is None:
            return None
        out = _Output(Path(path), flag, video)
        self._outputs.append(out)
        return out.final

    # -- checks ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse overlaps, existing outputs without ``overwrite``, missing directories, bad extensions."""
        for i, o in enumerate(self._outputs):
            final = o.final
            parent = final.parent if str(final.parent) else Path(".")
            if not parent.is_dir():
                raise Pan360Error(f"output directory does not exist: {parent}")
            for inp, what in self._inputs:
                name = f"{inp} ({what})" if what else str(inp)
                if _same_file(final, inp):
                    raise Pan360Error(f"output {final} is the same file as the input {name}; "
                                      "choose another output name")
                if inp.is_dir() and final.exists() and final.resolve().is_relative_to(inp.resolve()):
                    raise Pan360Error(f"output {final} would replace a file inside the input folder {name}; "
                                      "choose another output name")
            for other in self._outputs[:i]:
                if _same_file(final, other.final):
                    raise Pan360Error(f"{other.flag} and {o.flag} name the same file {final}; "
                                      "choose different names")
            if final.is_dir():
                raise Pan360Error(f"output {final} is a directory")
            if final.exists() and not self.overwrite:
                raise Pan360Error(f"output {final} already exists (use --overwrite to replace it)")
            if o.video:
                from pan360.media.video import container_for

                container_for(final)

    # -- claims and temporaries --------------------------------------------------------------------
    def _claim(self, o: _Output) -> None:
        lock = o.final.with_name(f".{o.final.name}{LOCK_SUFFIX}")
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _cannot_create(lock.parent, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                pid = f" (PID {holder})" if holder.isdigit() else ""
                raise Pan360Error(f"another pan360 run{pid} is writing {o.final}: refusing to write it at the "
                                  "same time (wait for that run, or choose another output)") from None
            except OSError:  # a filesystem without flock: go on unclaimed, leaving no lock file behind
                os.close(fd)
                lock.unlink(missing_ok=True)
                return
            try:
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    break  # still the file at that name (not one its last holder just unlinked)
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        o.lock = (lock, fd)

    def _remove_stale(self, o: _Output) -> None:
        parent = o.final.parent if str(o.final.parent) else Path(".")
        pattern = _temp_pattern(o.final)
        removed = []
        for entry in os.scandir(parent):
            m = pattern.fullmatch(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        if removed and self._notify is not None:
            self._notify(f"removed {', '.join(removed)} in {parent}: the temporary output of a pan360 run that "
                         "was killed")

    def _temporary(self, o: _Output) -> None:
        """Create an empty hidden ``.stem.tmp-PID-XXXXXXXX.ext`` beside the output (umask applies)."""
        for _ in range(100):
            tmp = o.final.with_name(f".{o.final.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{o.final.suffix}")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            except OSError as exc:
                raise _cannot_create(o.final.parent, exc) from exc
            o.tmp, o.mode = tmp, tmp.stat().st_mode & 0o777  # a new file's mode under the umask
            return
        raise Pan360Error(f"cannot create a temporary file in {o.final.parent}")

    def temp(self, path: str | os.PathLike[str]) -> Path:
        """The temporary to write for output ``path`` (inside the ``with`` block)."""
        for o in self._outputs:
            if o.final == Path(path) and o.tmp is not None:
                return o.tmp
        raise KeyError(f"{path} is not an open output of this command")

    def __enter__(self) -> OutputSet:
        self.check()
        try:
            for o in self._outputs:
                self._claim(o)
            for o in self._outputs:
                self._remove_stale(o)
                self._temporary(o)
        except BaseException:
            self._release()
            raise
        return self

    # -- commit or roll back -----------------------------------------------------------------------
    def _commit(self) -> None:
        for o in self._outputs:
            assert o.tmp is not None
            if not o.tmp.exists() or o.tmp.stat().st_size == 0:
                raise Pan360Error(f"nothing was written to {o.final}")
            # Some writers (safetensors) replace the file with a 0600 one: give the output that mode back.
            os.chmod(o.tmp, o.mode)
            with open(o.tmp, "rb") as f:  # the data on disk before the name points at it (a crash leaves old or new)
                os.fsync(f.fileno())
            if o.final.exists() and not self.overwrite:  # created by something else meanwhile
                raise Pan360Error(f"output {o.final} already exists (use --overwrite to replace it)")
        with _signals_held():  # all renames or none: a signal between two would leave only some
            for o in self._outputs:
                assert o.tmp is not None
                os.replace(o.tmp, o.final)
                o.tmp = None
        for parent in {o.final.parent for o in self._outputs}:  # the renames on disk too
            try:
                fd = os.open(parent if str(parent) else ".", os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _release(self) -> None:
        for o in self._outputs:
            if o.tmp is not None:
                o.tmp.unlink(missing_ok=True)
                o.tmp = None
        for o in self._outputs:
            if o.lock is not None:
                lock, fd = o.lock
                o.lock = None
                try:
                    if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                        lock.unlink()  # while still holding it: the next run creates a fresh one
                except OSError:
                    pass
                os.close(fd)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            self._release()


def check_output(final_path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work is done (see :meth:`OutputSet.check`); returns it as a Path.

    Raises
    ------
    Pan360Error : the output is one of the inputs (even with ``overwrite``), exists and ``overwrite``
        is False, is a directory, or its directory does not exist.
    """
    files = OutputSet(overwrite=overwrite)
    for inp in inputs:
        files.add_input(inp)
    final = files.add_output(final_path)
    files.check()
    assert final is not None
    return final


@contextmanager
def atomic_output(
    final_path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path in the output's directory; rename it to ``final_path`` on success.

    A one-output :class:`OutputSet`: the same checks and claim, a hidden temporary with the same
    extension, removed on any exception (KeyboardInterrupt included), ``final_path`` then untouched.
    """
    files = OutputSet(overwrite=overwrite)
    for inp in inputs:
        files.add_input(inp)
    final = files.add_output(final_path)
    assert final is not None
    with files:
        yield files.temp(final)
