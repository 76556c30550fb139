"""Studies: Optuna's storage as the way workers share work — one trial per unit of work.

`search` shares its configs out this way, and so does `run` with a shared `--storage`: every
worker enqueues the work not yet queued, asks for trials, claims each (two workers may queue the
same unit at once; only one scores it), and records a heartbeat for what it holds, so that a
worker that dies or goes silent has its trials failed and queued again for the others. No
scheduler of our own: the queue, the states and the heartbeats are Optuna's.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable


def heartbeat_s() -> int:
    """Seconds between a worker's heartbeats (PROMPTOPT_HEARTBEAT_S, default 30)."""
    return max(1, int(os.environ.get("PROMPTOPT_HEARTBEAT_S", "30")))


def optuna_storage(url: str):
    """Optuna's RDB storage on the results store's database (promptopt.store opens it); a trial
    whose worker went silent for three heartbeats (a dead machine, a lost network) is failed and
    queued again."""
    from promptopt.store import optuna_storage as opened

    return opened(url, heartbeat_s(), queue_again)


def tell(study, trial, values=None, state=None) -> None:
    """Finish a trial, unless another worker already finished it: one that thought this worker
    silent failed and requeued it, or one that took the same queued trial (on SQLite, Optuna
    cannot lock the row, so two processes asking at once may both be handed it)."""
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, values, state=state, skip_if_finished=True)


def set_attr(trial, key: str, value) -> None:
    """Note `key` on a trial, unless another worker already finished it (two workers handed one
    trial on SQLite, or one that took over a silent worker's): the note is theirs to write."""
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr(key, value)


def taken_by_another(study, trial) -> bool:
    """Whether another worker was handed this same trial and noted itself on it after this one:
    on SQLite Optuna cannot lock the row, so two workers asking at once may both get it; the one
    that wrote its name last scores it, the other backs off without finishing it."""
    worker = study._storage.get_trial(trial._trial_id).user_attrs.get("worker")
    return worker is not None and worker != worker_name()


def ask(study, dist):
    """The next queued trial. Optuna warns that heartbeats are meant for `optimize`; our workers
    keep them with `Heartbeat`, so the warning says nothing to the user."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask({"config": dist})


def queue_again(study, trial) -> None:
    study.enqueue_trial({"config": trial.params.get("config")})


class Heartbeat:
    """Records a heartbeat for each trial this worker holds, from a background thread."""

    def __init__(self, study):
        import threading

        self._storage, self._ids, self._stop = study._storage, set(), threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def hold(self, trial) -> None:
        self._ids.add(trial._trial_id)
        with contextlib.suppress(Exception):  # finished meanwhile by a worker handed the same trial
            self._storage.record_heartbeat(trial._trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            for trial_id in list(self._ids):
                with contextlib.suppress(Exception):  # a busy or lost database: the next beat tries again
                    self._storage.record_heartbeat(trial_id)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def until_finished(
    study, work: Callable[[], None], poll_s: float = 2.0, say: Callable[[str], None] | None = None
) -> None:
    """Do this worker's share of the study, then wait for trials other workers are still running
    (the choice needs all of them); trials a dead process of this machine left are redone."""
    import time

    from optuna.trial import TrialState

    waited = False
    while True:
        work()
        fail_dead_trials(study)
        if any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
            continue  # a silent worker's trials were queued again: take them
        open_trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if not open_trials:
            return
        if not waited:
            if say:
                say(f"Waiting for {len(open_trials)} trials other workers are running ...")
            waited = True
        time.sleep(poll_s)


def fail_dead_trials(study) -> None:
    """Trials left RUNNING by a process of this machine that no longer exists, or by a worker
    anywhere that stopped sending heartbeats, are failed, so their configs are queued again
    (their finished records make the retry free)."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():  # trials of a silent worker on any machine (heartbeats)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial({"config": t.params.get("config")})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def share_out(study, units: dict, work: Callable[[object], None], say: Callable[[str], None] | None = None) -> None:
    """Score every unit (id -> unit) once among the workers of `study`, then wait for the
    others: each worker takes queued units until none is left; a unit already running under a
    lower-numbered trial is another worker's. Units queued again after they finished cost no LM
    call (their records are in the store), so a new pass simply queues every unit again."""
    import optuna
    from optuna.trial import TrialState

    dist = optuna.distributions.CategoricalDistribution(sorted(units))
    fail_dead_trials(study)
    queued = {
        t.params.get("config")
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    }
    for uid in units:
        if uid not in queued:
            study.enqueue_trial({"config": uid})

    def mine() -> None:
        with Heartbeat(study) as beat:
            for trial in queued_trials(study, dist, beat):
                if taken_by_another(study, trial):
                    continue
                unit = units.get(trial.params["config"])
                running = [
                    t.number
                    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if t.params.get("config") == trial.params["config"] and t.number < trial.number
                ]
                if unit is None or running:
                    set_attr(trial, "duplicate", unit is not None)
                    tell(study, trial, state=TrialState.FAIL)
                    continue
                try:
                    work(unit)
                except BaseException:  # a budget, Ctrl-C, a fatal error: the unit is queued again next time
                    tell(study, trial, state=TrialState.FAIL)
                    raise
                tell(study, trial, 0.0)

    until_finished(study, mine, say=say)


def queued_trials(study, dist, beat: Heartbeat):
    """Each queued trial this worker takes, while any is queued: marked as its own, held by its
    heartbeat."""
    from optuna.trial import TrialState

    while any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        trial = ask(study, dist)
        set_attr(trial, "worker", worker_name())
        beat.hold(trial)
        yield trial


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
