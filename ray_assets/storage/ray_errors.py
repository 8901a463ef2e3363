"""Failures of a Ray pipeline, told as one headline that names the root cause.

Ray re-raises a task's exception on the driver as `RayTaskError(<type>)`: an instance of the
original type whose text is a traceback, with the original exception (and its own text) in
its `cause` attribute. Ray Data appends its retry advice to the message. A user reading a failed
Dagster run needs the root cause's type and message in the first line, and the place it was
raised; not `ray::Write() (pid=..., ip=...)`, and not retry advice after a schema diff.
"""

from __future__ import annotations

import re

from ray_assets.errors import PipelineFailedError, RayAssetsError

_MAX_MESSAGE_CHARS = 2000
_EXCEPTION_LINE = re.compile(r"^(?!ray\.)([A-Za-z_][\w.]*): (.*)$")
_FRAME_LINE = re.compile(r'^\s*File "(.+)", line (\d+), in (.+)$')
_RAY_ADVICE = re.compile(r"\s*Failed to apply UDF transform after \d+/\d+ attempts.*", re.DOTALL)
_RAY_WRAPPER = re.compile(r"^(RayTaskError|RayActorError)\(|^ray\.exceptions\.")
_STALL_ADVICE = (
    " A stage may ask for more CPUs or GPUs than the cluster has, or an actor pool may hold every "
    "CPU so the read stage never runs; if the pipeline is legitimately this slow, raise "
    "RayResource.no_progress_timeout_s."
)

_ACTOR_LOST = {"ActorDiedError", "ActorUnavailableError", "RayActorError"}
_ACTOR_LOST_TOLD = (
    "an actor process of the pipeline died (killed, out of memory, or crashed) more times than "
    "it may be restarted (ActorPool.max_restarts)"
)


def pipeline_error(error: BaseException, what: str) -> RayAssetsError:
    """The error a failed write raises: our own verdict if a task made one, else the root cause."""
    ours = find_cause(error, RayAssetsError)
    if ours is not None:
        return type(ours)(f"{what}: {message_of(ours)}. Nothing was committed.")
    return PipelineFailedError(
        f"{what}: the Ray pipeline failed, nothing was committed and the table is at its "
        f"previous version. Cause: {describe_cause(error)}"
    )


def find_cause(
    error: BaseException | None, kind: type[BaseException] = BaseException
) -> BaseException | None:
    """The innermost exception of type `kind` in a (Ray-wrapped) chain, or None."""
    if error is None:
        return None
    return next((e for e in reversed(_chain(error)) if isinstance(e, kind)), None)


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes, outermost first (Ray's `cause`, then Python's)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return chain


def message_of(error: BaseException) -> str:
    """An exception's own message, without the retry advice Ray Data appends to it."""
    text = str(error.args[0]) if len(error.args) == 1 else str(error)
    return _RAY_ADVICE.sub("", text).rstrip(" .") or type(error).__name__


def describe_cause(error: BaseException | None) -> str:
    """The root cause of a (Ray-wrapped) exception as one line: type, message and where.

    The original exception object gives the type and message; the traceback text Ray kept
    gives the frame that raised it (the user's function, file and line).
    """
    if error is None:
        return "unknown"
    chain = _chain(error)
    root = chain[-1]
    frame = next(filter(None, (_raising_frame(str(e)) for e in chain)), None)
    if _is_ray_wrapper(root):
        # the original is only text in a traceback (e.g. Ray Data's UserCodeException)
        lines = (_first_exception_line(str(e)) for e in chain)
        described = next(filter(None, lines), None) or _first_line(root)
    else:
        described = f"{type(root).__name__}: {message_of(root)}"
    if "made no progress" in described:
        described = _stall(str(root)) + _STALL_ADVICE
    elif lost := next((e for e in chain if type(e).__name__ in _ACTOR_LOST), None):
        described = f"{_ACTOR_LOST_TOLD}: {_first_line(lost)}"
    where = f" (in {frame[2]}, {frame[0]}:{frame[1]})" if frame else ""
    return f"{described}{where}"[:_MAX_MESSAGE_CHARS]


def _stall(text: str) -> str:
    """Ray Data's no-progress verdict, with the stages it found still running."""
    lines = text.splitlines()
    stages = [line.strip()[2:] for line in lines if line.startswith("  - ")]
    head = lines[0] if lines else text
    if not stages:
        return f"ExecutionTimeoutError: {head}"
    return f"ExecutionTimeoutError: {head} Stages still running: {'; '.join(stages)}."


def _is_ray_wrapper(error: BaseException) -> bool:
    return bool(_RAY_WRAPPER.match(type(error).__name__)) or type(error).__module__.startswith(
        "ray."
    )


def _raising_frame(traceback_text: str) -> tuple[str, str, str] | None:
    """The last frame above the first exception line of a traceback text."""
    frame = None
    for line in traceback_text.splitlines():
        match = _FRAME_LINE.match(line)
        if match:
            frame = (match.group(1), match.group(2), match.group(3))
        elif frame is not None and _EXCEPTION_LINE.match(line.strip()):
            return frame
    return None


def _first_exception_line(text: str) -> str | None:
    seen_frame = False
    for line in text.splitlines():
        if _FRAME_LINE.match(line):
            seen_frame = True
            continue
        match = _EXCEPTION_LINE.match(line.strip())
        if seen_frame and match:
            return f"{match.group(1)}: {match.group(2)}"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
