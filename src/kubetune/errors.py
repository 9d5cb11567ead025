"""Errors kubetune shows to users.

Every error a user can fix (bad config, missing file, unknown runtime...) is a
:class:`KubetuneError`: the CLI prints its message as one line and exits non-zero, without a
traceback. Anything else is a bug and keeps its traceback.
"""


class KubetuneError(Exception):
    """Base class of errors caused by user input or environment, not by a bug."""

    exit_code = 2


class ConfigError(KubetuneError):
    """A config field, file or value is invalid."""


class DataError(KubetuneError):
    """The dataset cannot be read or lacks what the chosen format needs."""


class ModelError(KubetuneError):
    """The model cannot be found or loaded."""


class FetchError(KubetuneError):
    """A model or dataset cannot be fetched (unknown scheme, missing bucket or repo, bad credentials...)."""


class JobNotFoundError(KubetuneError):
    """No job of that name exists in the backend."""


class JobExistsError(KubetuneError):
    """A job of that name already exists."""


class JobFailedError(KubetuneError):
    """A job ended Failed or Cancelled while the caller waited for another status."""

    exit_code = 1


class JobTimeoutError(KubetuneError):
    """A job did not reach the awaited status in time."""

    exit_code = 1


class OutputError(KubetuneError):
    """Outputs (checkpoints, exports) cannot be written: the disk is full, a quota or permission refuses it."""


#: Exit status of a worker, and of its launcher, that stopped after writing a checkpoint because it
#: was asked to (SIGTERM or SIGUSR1: preemption, a node drain, a suspend). The job is resumable
#: from that checkpoint; backends count it as "preempted", never against ``max_restarts``.
#: 75 is ``EX_TEMPFAIL`` of sysexits.h: a temporary failure, to be retried.
PREEMPTED_EXIT_CODE = 75
