"""What went wrong talking to the Hub, in one sentence that says what to do.

huggingface_hub raises a family of exceptions (with the HTTP detail in them); the user needs
to know which of a handful of things happened and what fixes it. A token never appears in a
message: the exceptions do not carry it, and `scrub` removes it from any text shown anyway.
"""

from __future__ import annotations

import errno
import os

from mixtui.core.errors import MixtuiError, Remedy, UsageError, literal

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class HubError(MixtuiError):
    """The Hub refused, could not be reached, or the disk could not take the files."""

    code = "hub-failed"


class HubNotFound(UsageError):
    """No such repository or revision (a name to check: exit code 2)."""

    code = "hub-not-found"


class DiskFull(HubError):
    """Not enough free disk space for the files to fetch."""

    code = "disk-full"


# What the user can do, in the command line's words (the TUI has its own, tui/wording.py).
AGAIN = Remedy("again", "run the command again")
LEAVE_OUT_REVISION = Remedy("revision", " (or leave out --revision for main)")
USE_OFFLINE = Remedy("offline", ", or use --offline for what is cached")
USE_DEBUG = Remedy("debug", ", or with --debug to see where")


def endpoint() -> str:
    from huggingface_hub import constants  # deferred: huggingface_hub reads its settings on import

    return str(constants.ENDPOINT)


def scrub(text: str) -> str:
    """`text` with any token the user has (set, or stored by `hf auth login`) replaced."""
    tokens = [os.environ.get(name) for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
    try:
        # deferred: huggingface_hub reads its settings on import
        # deferred: huggingface_hub reads its settings on import
        from huggingface_hub import get_token

        tokens.append(get_token())
    except Exception:  # no readable token store: nothing more to hide
        pass
    for token in tokens:
        if token and len(token) >= 4:
            text = text.replace(token, "<token>")
    return text


def _has_token() -> bool:
    from huggingface_hub import get_token  # deferred: huggingface_hub reads its settings on import

    return get_token() is not None


def describe(exc: BaseException, repo: str, revision: str | None) -> MixtuiError:
    """The MixtuiError that tells the user what `exc` means for downloading `repo`."""
    # deferred: huggingface_hub's API modules take about a second to import
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    facts = {"repo": repo, "revision": rev, "status": _status(exc)}
    repo_text, rev_text, hub = literal(repo), literal(rev), literal(endpoint())  # in templates
    if isinstance(exc, GatedRepoError):
        action = ("your token's account has not been granted access: accept the licence on "
                  f"{hub}/{repo_text} with that account" if _has_token() else
                  f"accept its licence on {hub}/{repo_text}, then log in with `hf auth login` "
                  "(or set HF_TOKEN)")
        return HubError(f"{repo_text} is a gated repository; {action}, and {{again}}.",
                        code="hub-gated", facts=facts, remedies=(AGAIN,))
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFound(f"{repo_text} has no revision '{rev_text}'; check the branch, tag or "
                           "commit hash{revision}.", code="hub-revision-not-found", facts=facts,
                           remedies=(LEAVE_OUT_REVISION,))
    status = _status(exc)
    if isinstance(exc, RepositoryNotFoundError) or status == 401:
        if status == 401 and _has_token() and not _is_repo_not_found(exc):
            return HubError("The Hub refused your token (401); log in again with "
                            "`hf auth login` or fix HF_TOKEN, and {again}.",
                            code="hub-token-refused", facts=facts, remedies=(AGAIN,))
        hint = ("" if _has_token() else
                "; if it is private, log in with `hf auth login` (or set HF_TOKEN)")
        return HubNotFound(f"{repo} was not found on the Hub at {endpoint()}; check the name "
                           f"(org/name, as on its model page){hint}.", facts=facts)
    if isinstance(exc, DisabledRepoError):
        return HubError(f"{repo} has been disabled by its owner; pick another repository.",
                        code="hub-disabled", facts=facts)
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError("Offline mode is on (HF_HUB_OFFLINE=1); unset it to download, or use "
                        "what is cached.", code="hub-offline", facts=facts)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        where = f" ({literal(exc.filename)})" if getattr(exc, "filename", None) else ""
        return DiskFull(f"The disk filled up while downloading{where}; free some space and "
                        "{again} (finished files are kept).", facts=facts, remedies=(AGAIN,))
    if _is_connection_error(exc):
        return HubError(f"The Hub at {hub} cannot be reached or the connection dropped "
                        f"({type(exc).__name__}); check the network and {{again}} (finished "
                        "files are kept){offline}.", code="hub-unreachable", facts=facts,
                        remedies=(AGAIN, USE_OFFLINE))
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return HubError(f"The Hub answered {status} for {repo}; try again later (finished files "
                        "are kept).", code="hub-http-error", facts=facts)
    return HubError(literal(scrub(f"Downloading {repo} failed ({type(exc).__name__}: {exc}); "))
                    + "{again}{debug}.", facts=facts, remedies=(AGAIN, USE_DEBUG))


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_repo_not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return headers.get("X-Error-Code") == "RepoNotFound"


def _is_connection_error(exc: BaseException) -> bool:
    # huggingface_hub's HTTP client (httpx2) raises TransportError subclasses for these
    transport = any(cls.__name__ in ("TransportError", "TimeoutException")
                    for cls in type(exc).__mro__)
    if transport or isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _is_connection_error(cause)
