"""The one user-facing error family.

Library code raises these; only ``cli.py`` turns them into a message and an exit code. Every
message says what went wrong *and* what to do about it (``hint``).
"""

from __future__ import annotations


class ModelserveError(Exception):
    """Base of every error a user may see. ``exit_code`` is distinct per subclass."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(ModelserveError):
    """The deployment spec (YAML or flags) is invalid."""

    exit_code = 3


class ModelNotFound(ModelserveError):
    """The model reference names nothing that exists or can be fetched."""

    exit_code = 4


class BackendUnavailable(ModelserveError):
    """The chosen backend cannot run here (engine missing, wrong device, ...)."""

    exit_code = 5


class PortInUse(ModelserveError):
    exit_code = 6


class StartupFailed(ModelserveError):
    """A server process exited before it became ready."""

    exit_code = 7

    def __init__(
        self, message: str, hint: str | None = None, *, returncode: int | None = None, log_tail: str = ""
    ) -> None:
        super().__init__(message, hint)
        self.returncode = returncode
        self.log_tail = log_tail

    def __str__(self) -> str:
        text = self.message
        if self.log_tail:
            text += "\n--- last lines of the log ---\n" + self.log_tail.rstrip("\n")
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class ReadinessTimeout(StartupFailed):
    """The server stayed alive but never answered like a client needs within the deadline."""

    exit_code = 8


class ReadinessRefused(StartupFailed):
    """The server answers, but in a way waiting cannot change (HTTP 401, 403, or 404 on the probed route)."""

    exit_code = 18


class StartupCancelled(ModelserveError):
    """A stop was requested (SIGTERM/SIGINT) while the server was still starting."""

    exit_code = 0


class ClientConfigError(ModelserveError):
    """An agent config file cannot be merged (not valid JSON, wrong shape, not writable)."""

    exit_code = 9


class DeploymentNotFound(ModelserveError):
    exit_code = 10


class AlreadyRunning(ModelserveError):
    exit_code = 11


class DeviceError(ModelserveError):
    """The requested devices do not exist or the model will not fit on them."""

    exit_code = 12


class ModelPrepareError(ModelserveError):
    """Fetching, converting or creating a model failed (the built-in alias, an Ollama pull)."""

    exit_code = 13


class StopFailed(ModelserveError):
    """Processes of a deployment survived SIGKILL (should not happen; reported, not hidden)."""

    exit_code = 14


class EnvError(ModelserveError):
    """Creating or using a managed backend environment failed."""

    exit_code = 15


class RestartsExhausted(ModelserveError):
    """`modelserve run` gave up restarting a crashing deployment (systemd's policy takes over)."""

    exit_code = 16


class StateError(ModelserveError):
    """modelserve's own state folder cannot be written (read-only, not a folder, disk full)."""

    exit_code = 17


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived while `up` was starting (see ``process.stop_signals``).

    Not a ModelserveError, and a BaseException like KeyboardInterrupt, so that no ``except
    Exception`` on the way swallows it: everything between the signal and the CLI unwinds, and
    whatever holds started processes stops them."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ManagedElsewhere(ModelserveError):
    """Something else starts and stops this deployment (a fleet's gateway, `modelserve run`, or a
    server modelserve did not start): `restart` leaves it to that."""

    exit_code = 19


class TargetUnreachable(ModelserveError):
    """`modelserve bench`: a deployment or URL to measure does not answer its OpenAI route."""

    exit_code = 20


class RequestsFailed(ModelserveError):
    """`modelserve bench` ran, and some of its requests failed (the report says which and why)."""

    exit_code = 21
