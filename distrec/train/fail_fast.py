"""Errors a restart cannot fix end a run at once, whatever ``trainer.max_failures`` allows.

Ray Train restarts the worker group after any worker error, up to FailureConfig.max_failures, and
its failure policy is not configurable. A bad row or a wrong setting fails the same way on every
restart, each one paying for a new worker group and a checkpoint load first. This callback runs
on Ray Train's controller when a worker has failed: raising there is a controller error, which
Ray Train never retries, and ``unwrap_input_error`` turns it back into the worker's own error.
"""

from __future__ import annotations

from ray.train import ControllerError, UserCallback

from distrec.errors import ConfigError, DataError, DistrecError

NOT_RETRIED = (DataError, ConfigError)  # deterministic: the same input fails the same way again


def _worker_error(exc: BaseException) -> BaseException:
    # Ray Train hands the controller each worker's exception wrapped with its traceback text
    return getattr(exc, "_base_exc", exc)


class StopOnInputErrors(UserCallback):
    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        for _, exc in sorted(worker_exceptions.items()):
            cause = _worker_error(exc)
            if isinstance(cause, NOT_RETRIED):
                raise cause


def unwrap_input_error(exc: BaseException) -> BaseException:
    """The DistrecError ``StopOnInputErrors`` raised, if that is what ended the run; else ``exc``."""
    if isinstance(exc, ControllerError) and isinstance(exc.controller_failure, DistrecError):
        return exc.controller_failure
    return exc
