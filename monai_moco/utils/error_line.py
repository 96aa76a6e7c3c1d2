"""One closing line that names the real error of a failed bundle run.

MONAI wraps every exception raised inside a bundle config in its own: ``RuntimeError: Failed to evaluate
ConfigExpression: ...``, ``Failed to instantiate ...``, ``applying transform ...``. So the message a user needs (a
missing dataset folder, an unreadable radiograph) sits in the middle of a long traceback whose last line names MONAI's
wrapper. :func:`install_error_line_hook` chains a :data:`sys.excepthook` that prints, after the usual traceback, one
line ``ERROR: <type>: <message>`` of the :func:`root_cause`.

Importing this module changes nothing. The bundles activate the hook through the first entry of their ``imports``
list, ``"$import monai_moco.utils.bundle_error_line"``, which MONAI evaluates before any other config expression and
which installs the hook only in a ``python -m monai.bundle`` process (:func:`is_bundle_cli`); a program that parses a
bundle in-process keeps its own hook unless it calls :func:`install_error_line_hook` itself.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from types import TracebackType

__all__ = [
    "WRAPPER_PACKAGES",
    "exception_chain",
    "format_error_line",
    "install_error_line_hook",
    "is_bundle_cli",
    "is_wrapper",
    "root_cause",
    "uninstall_error_line_hook",
]

#: Packages whose ``RuntimeError`` raised from a cause is a wrapper (:func:`is_wrapper`), skipped by :func:`root_cause`.
WRAPPER_PACKAGES: tuple[str, ...] = ("monai",)

# the attribute of our hook that holds the hook it chains to (also how an installed hook is recognised)
_PREVIOUS = "_monai_moco_previous_excepthook"
_EMBEDDED_TRACEBACK = "Traceback (most recent call last):"
_CHAIN_SEPARATOR = re.compile(
    r"\n\s*\n(?:The above exception was the direct cause of the following exception:"
    r"|During handling of the above exception, another exception occurred:)\s*\n\s*\n"
)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exceptions Python's traceback shows for ``exc``, from ``exc`` to the innermost cause.

    Follows ``__cause__`` (``raise ... from err``), else ``__context__`` unless suppressed (``from None``), the same way
    the default traceback printer does; stops at a cycle.

    Args:
        exc: the exception that reached the top.

    Returns:
        ``[exc, its cause, the cause's cause, ...]``.

    Example::

        try:
            try:
                open("/nonexistent")
            except OSError as err:
                raise RuntimeError("wrapper") from err
        except RuntimeError as err:
            [type(e).__name__ for e in exception_chain(err)]  # ['RuntimeError', 'FileNotFoundError']
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        chain.append(current)
        seen.add(id(current))
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)
    return chain


def is_wrapper(exc: BaseException, wrappers: Sequence[str] = WRAPPER_PACKAGES) -> bool:
    """Whether ``exc`` only re-labels its cause: a ``RuntimeError`` raised ``from`` another exception by ``wrappers``.

    MONAI's three wrappers are of this kind: ``Failed to evaluate ConfigExpression`` (``monai.bundle.config_item``),
    ``Failed to instantiate component`` (``monai.utils.module``) and ``applying transform`` (``monai.transforms``).
    MONAI's other ``raise ... from`` (a ``KeyError`` or ``ValueError`` such as "the referring item ``@x`` is not
    defined") add the useful message and are not wrappers.

    Args:
        exc: an exception of a chain.
        wrappers: top-level package names; the frame that raised ``exc`` (the last of its traceback) must be in one.

    Returns:
        True for a wrapper.

    Example::

        from monai.bundle import ConfigParser

        try:
            ConfigParser({"x": "$open('/nonexistent')"}).get_parsed_content("x")
        except RuntimeError as err:
            is_wrapper(err), is_wrapper(err.__cause__)  # (True, False)
    """
    if not isinstance(exc, RuntimeError) or exc.__cause__ is None or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return any(module == p or module.startswith(p + ".") for p in wrappers)


def root_cause(exc: BaseException, wrappers: Sequence[str] = WRAPPER_PACKAGES) -> BaseException:
    """The exception worth naming: the outermost one in ``exc``'s chain that is not a wrapper (:func:`is_wrapper`).

    MONAI's wrappers are skipped, and the first exception raised elsewhere (our code, the user's config expression, a
    reader of the user's data) is the answer; being the outermost of the rest, our own ``raise XRayReadError(path ...)
    from err`` wins over the reader's bare error below it. When every exception is a wrapper, the innermost is returned.

    Args:
        exc: the exception that reached the top.
        wrappers: passed to :func:`is_wrapper`.

    Returns:
        an exception of ``exception_chain(exc)``.

    Example::

        from monai.bundle import ConfigParser

        try:
            ConfigParser({"x": "$open('/nonexistent')"}).get_parsed_content("x")
        except RuntimeError as err:  # MONAI's "Failed to evaluate ConfigExpression"
            root_cause(err)  # FileNotFoundError(2, 'No such file or directory')
    """
    chain = exception_chain(exc)
    return next((e for e in chain if not is_wrapper(e, wrappers)), chain[-1])


def _embedded_root_cause(text: str, wrappers: Sequence[str]) -> str | None:
    """``<type>: <message>`` of the root cause in a traceback printed as text, by the rule of :func:`root_cause`.

    Args:
        text: a printed traceback from ``Traceback (most recent call last):`` on, innermost exception first.
        wrappers: top-level package names, matched as a path segment of the raising frame's file.

    Returns:
        the exception line (a dotted type shortened to its name), or None when ``text`` holds no exception line.
    """
    blocks = []  # (summary, is_wrapper), innermost first as Python prints them
    for block in _CHAIN_SEPARATOR.split(text):
        lines = block.rstrip().splitlines()
        frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
        j = frames[-1] + 1 if frames else 1
        while j < len(lines) and lines[j].startswith("    "):  # the frame's source line and its ^^^ markers
            j += 1
        summary = " ".join(line.strip() for line in lines[j:] if line.strip())
        if not summary:
            continue
        summary = re.sub(r"^[\w.]+\.(\w+)(?=:|$)", r"\1", summary)
        path = "/" + lines[frames[-1]].split('"')[1].replace("\\", "/") if frames else ""
        raised_in_wrapper = any(f"/{p}/" in path for p in wrappers)
        blocks.append((summary, raised_in_wrapper and summary.startswith("RuntimeError:")))
    if not blocks:
        return None
    # the innermost exception has no cause, so it is never a wrapper: it is the answer when all the others are
    return next((summary for summary, wrapper in reversed(blocks[1:]) if not wrapper), blocks[0][0])


def format_error_line(exc: BaseException, wrappers: Sequence[str] = WRAPPER_PACKAGES) -> str:
    """``ERROR: <type>: <message>`` of ``root_cause(exc)``, on one line.

    A message that embeds a traceback (PyTorch re-raises a DataLoader worker's error as ``Caught RuntimeError in
    DataLoader worker process 0. Original Traceback ...``, the worker's whole chain as text) gives the root cause of
    that chain, by the same rule; any other multi-line message is joined with spaces.

    Args:
        exc: the exception that reached the top.
        wrappers: passed to :func:`root_cause`.

    Returns:
        the line, without a trailing newline.

    Example::

        format_error_line(ValueError("no labels.csv\\nin /data"))  # 'ERROR: ValueError: no labels.csv in /data'
    """
    cause = root_cause(exc, wrappers)
    message = str(cause)
    if _EMBEDDED_TRACEBACK in message:
        embedded = _embedded_root_cause(message[message.index(_EMBEDDED_TRACEBACK) :], wrappers)
        if embedded is not None:
            return f"ERROR: {embedded}"
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return f"ERROR: {type(cause).__name__}: {message}" if message else f"ERROR: {type(cause).__name__}"


def install_error_line_hook() -> bool:
    """Chain a :data:`sys.excepthook` that prints :func:`format_error_line` to stderr after the previous hook's output.

    The previous hook (by default Python's, which prints the traceback) runs first, so the traceback stays and the
    ``ERROR:`` line is the last line of the output. Only :class:`Exception` gets the line (not ``KeyboardInterrupt``).
    Idempotent: a second call while the hook is the current :data:`sys.excepthook` changes nothing.

    Returns:
        True when the hook was installed, False when it already was.

    Example::

        from monai_moco.utils.error_line import install_error_line_hook

        install_error_line_hook()
        open("/nonexistent")  # traceback, then: ERROR: FileNotFoundError: [Errno 2] No such file or directory: ...
    """
    if hasattr(sys.excepthook, _PREVIOUS):
        return False
    previous = sys.excepthook

    def error_line_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            previous(exc_type, exc, tb)
        finally:
            if isinstance(exc, Exception):
                print(format_error_line(exc), file=sys.stderr, flush=True)

    setattr(error_line_hook, _PREVIOUS, previous)
    sys.excepthook = error_line_hook
    return True


def uninstall_error_line_hook() -> bool:
    """Restore the :data:`sys.excepthook` that :func:`install_error_line_hook` chained to.

    Returns:
        True when the hook was removed; False when the current :data:`sys.excepthook` is not ours (then nothing changes).

    Example::

        install_error_line_hook()
        uninstall_error_line_hook()  # True; sys.excepthook is the one before
    """
    previous = getattr(sys.excepthook, _PREVIOUS, None)
    if previous is None:
        return False
    sys.excepthook = previous
    return True


def is_bundle_cli() -> bool:
    """Whether this process is a ``python -m monai.bundle`` run (also a ``torchrun ... -m monai.bundle`` worker).

    Returns:
        True when ``__main__`` is ``monai.bundle.__main__``.

    Example::

        if is_bundle_cli():
            install_error_line_hook()
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "monai.bundle.__main__"
