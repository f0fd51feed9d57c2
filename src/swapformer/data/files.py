"""Reading UTF-8 text files, optionally gzip-compressed."""

from __future__ import annotations

import gzip
from pathlib import Path

from swapformer.data.errors import DataError

__all__ = ["existing_path", "read_lines", "read_text_file"]


def existing_path(path: str | Path, *, argument: str) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`, failing early when it does not exist.

    Args:
        path: A file or folder path.
        argument: The name of the option that held the path, used in the error message.

    Returns:
        The path as a ``Path``, with ``~`` expanded.

    Raises:
        DataError: If nothing exists at ``path``.
    """
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(
            f"{argument}={str(path)!r} does not exist (resolved to {str(resolved.absolute())!r}); "
            f"check the path or pass an existing file."
        )
    return resolved


def read_text_file(path: str | Path) -> str:
    """Read a whole UTF-8 text file; files ending in ``.gz`` are decompressed first.

    Args:
        path: The file to read.

    Returns:
        The decoded text, with ``\\r\\n`` line endings normalised to ``\\n``.

    Raises:
        DataError: If the file is missing, is not valid gzip, or is not valid UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{str(path)!r} is not a file; check the path.")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"could not read {str(path)!r} ({error}); is it a valid gzip file?") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{str(path)!r} is not valid UTF-8 (byte {error.start}); re-encode it as UTF-8."
        ) from error
    return text.replace("\r\n", "\n")


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 (optionally ``.gz``) text file as a list of lines without their line endings.

    Args:
        path: The file to read.

    Returns:
        One string per line; a final newline does not create an extra empty line.

    Raises:
        DataError: As :func:`read_text_file`.
    """
    lines = read_text_file(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines
