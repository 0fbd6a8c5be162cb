"""Slurm backend through submitit: job arrays per resource class, submitted from a login node.

    python -m sweep +grid=paper launcher=slurm launcher.partition=gpu      submit and return
    python -m sweep status +grid=paper                                     each job's state (store + sacct)
    python -m sweep +grid=paper launcher=slurm launcher.wait=true          submit, wait, report

``run`` groups the jobs still to run into aligned arrays (``slurm_arrays``),
submits them with Slurm dependencies doing the DAG order, records
``submitted`` and the Slurm job id in each job's ``status.json`` and returns.
A re-run submits only what is neither done nor queued/running in Slurm (the
submission holds a lock on the store, so two ``run``s at once submit each job
once). Inside each job ``slurm_entry`` runs it, checkpointing and requeueing on
preemption or time limit. ``sweep.root`` and ``launcher.folder`` must be on a
filesystem the nodes share.

The only shell is the sbatch script: submitit quotes every value it writes;
partition/account/qos/constraint names are checked against a conservative
pattern; ``setup`` lines are shell by design (the user's own lines).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from launchers.base import BLOCKED, Events, LaunchReport, backend_states, check_budget, class_resources, close_ended_runs, payload, tasks_per_node
from launchers.config import SlurmConfig, as_config, overrides
from launchers.slurm_arrays import ArraySpec, plan_arrays
from launchers.slurm_queue import backend_states as query_states
from launchers.slurm_queue import max_array_size, partitions
from sweep.errors import SweepError, close_names
from sweep.plan import Job, Plan
from sweep.runner import Outcome, Runtime
from sweep.store import CANCELLED, DONE, FAILED, PREEMPTED, SUBMITTED, BackendState, JobState, Store, read_json

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+,-]{0,127}$")  # partition, account, qos (comma lists allowed)
CONSTRAINT = re.compile(r"^[A-Za-z0-9_.:&|,()\[\]*-]{1,256}$")  # Slurm feature expressions: a&b|(c,d)
UNKNOWN_GRACE_S = 60.0  # a job neither squeue nor sacct knows yet, right after submission


class SlurmLauncher:
    """Submits the plan as Slurm job arrays; waits for them only with ``wait: true``."""

    def __init__(self, cfg: SlurmConfig | Mapping[str, Any]) -> None:
        self.cfg = as_config(cfg, SlurmConfig)

    # ---- settings per resource class ------------------------------------------------
    def settings(self, job: Job) -> dict[str, Any]:
        """Partition, account, ... and resources for ``job``: top-level class, then launcher defaults, then overrides."""
        c = self.cfg
        base = {"partition": c.partition, "account": c.account, "qos": c.qos, "constraint": c.constraint}
        return {**base, **class_resources(job, c.classes)}

    def check(self, plan: Plan, todo: Sequence[str]) -> None:
        if shutil.which("sbatch") is None:
            raise SweepError("launcher", "sbatch is not on PATH: this machine cannot submit to Slurm",
                             "run on the cluster's login node, or pick launcher=local / launcher=ray")
        classes = {plan.get(j).resource_class: self.settings(plan.get(j)) for j in todo}
        for j in todo:
            tasks_per_node(plan.get(j), classes[plan.get(j).resource_class])
        known = partitions() if classes else None
        for cls, settings in classes.items():
            self._check_class(cls, settings, known)

    def _where(self, cls: str, key: str) -> str:
        """The config key a class's setting came from, for error messages."""
        if key in overrides(self.cfg.classes, cls):
            return f"launcher.classes.{cls}.{key}"
        return f"launcher.{key}" if key in ("partition", "account", "qos", "constraint") else f"resources.{cls}.{key}"

    def _check_class(self, cls: str, s: Mapping[str, Any], known: Mapping[str, str] | None) -> None:
        if not s.get("partition"):
            raise SweepError(self._where(cls, "partition"), f"resource class {cls!r} has no Slurm partition",
                             f"set launcher.partition=NAME for all classes or +launcher.classes.{cls}.partition=NAME (`sinfo` lists them)")
        for key in ("partition", "account", "qos"):
            if s.get(key) is not None and not NAME.match(str(s[key])):
                raise SweepError(self._where(cls, key), f"{s[key]!r} is not a valid Slurm {key} name", "use letters, digits and _.+,-")
        if s.get("constraint") is not None and not CONSTRAINT.match(str(s["constraint"])):
            raise SweepError(self._where(cls, "constraint"), f"{s['constraint']!r} is not a Slurm feature expression",
                             "use feature names joined by & | , with optional () [] (no spaces or quotes)")
        for key, low in (("time_min", 1), ("cpus", 1), ("gpus", 0), ("nodes", 1)):
            value = s.get(key, low)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SweepError(self._where(cls, key), f"must be an integer >= {low}, got {value!r}", f"set it to {max(low, 1)} or more")
        mem = s.get("mem_gb")
        if mem is not None and (not isinstance(mem, (int, float)) or isinstance(mem, bool) or mem <= 0):
            raise SweepError(self._where(cls, "mem_gb"), f"must be a number > 0, got {mem!r}", "set it to the GB a job needs, e.g. 16")
        for name in str(s["partition"]).split(",") if known is not None else ():
            if name not in known:
                raise SweepError(self._where(cls, "partition"), f"this cluster has no partition {name!r}.{close_names(name, known)}",
                                 f"pick one of {sorted(known)} (`sinfo`)")
            if int(s.get("gpus", 0)) > 0 and "gpu" not in known[name]:
                raise SweepError(self._where(cls, "partition"), f"resource class {cls!r} needs {s['gpus']} GPUs per node but "
                                 f"partition {name!r} offers none (its generic resources: {known[name]})",
                                 f"pick a GPU partition for {cls} (`sinfo -o '%R %G'`)")

    # ---- launch -------------------------------------------------------------------------
    def launch(self, plan: Plan, todo: Sequence[str], rt: Runtime, events: Events) -> LaunchReport:
        from sweep.tracking import file_lock

        self.check(plan, todo)
        store = Store(rt.store_root, lease_s=rt.lease_s)
        check_budget(plan, todo, store, self.cfg.max_gpu_hours)
        report = LaunchReport(detached=not self.cfg.wait)
        wanted = [j for j in plan if j.id in set(todo)]
        for job in wanted:
            if store.is_done(job.id):
                report.outcomes[job.id] = Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}), skipped=True)
        base_attempts = {j.id: store.state(j.id).attempts for j in wanted}
        # One submitter at a time per store: the second of two concurrent runs sees the first's jobs as queued.
        with file_lock(store.root / ".slurm-submit.lock"):
            live = {jid: s for jid, s in backend_states(plan, store).items() if s.active}
            refs = {jid: s.ref for jid, s in live.items()}  # job id -> Slurm id, for dependencies and waiting
            submit, blocked = self._split(plan, wanted, store, live)
            for jid, why in blocked.items():
                report.outcomes[jid] = Outcome(jid, BLOCKED, error=why)
            if submit:
                folder = self._folder(rt)
                arrays = plan_arrays(plan, submit, set(live), max_array_size())
                for spec in arrays:
                    refs.update(self._submit(plan, spec, refs, arrays, folder, rt, store))
        mine = [j.id for j in wanted if j.id in refs]
        if not self.cfg.wait:
            for jid in mine:
                report.outcomes[jid] = Outcome(jid, SUBMITTED, skipped=jid in live)
            return report
        report.outcomes.update(self._wait(plan, {j: refs[j] for j in mine}, store, events, base_attempts, rt))
        return report

    def _split(self, plan: Plan, wanted: Sequence[Job], store: Store, live: Mapping[str, BackendState]) -> tuple[list[str], dict[str, str]]:
        """(jobs to submit, jobs that cannot run: an upstream job is neither done, queued, nor submitted now)."""
        submit: list[str] = []
        blocked: dict[str, str] = {}
        for job in wanted:
            if store.is_done(job.id) or job.id in live:
                continue
            missing = [d for d in job.deps if not store.is_done(d) and d not in live and d not in submit]
            if missing:
                blocked[job.id] = f"upstream not done and not submitted: {', '.join(missing)}"
            else:
                submit.append(job.id)
        return submit, blocked

    def _folder(self, rt: Runtime) -> Path:
        # Fresh per launch: Slurm job ids restart at 1 on a new cluster, and stale result files
        # in a reused folder would make jobs look finished.
        base = Path(self.cfg.folder) if self.cfg.folder else Path(rt.store_root) / "slurm"
        return (base / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}").resolve()

    def _submit(self, plan: Plan, spec: ArraySpec, refs: Mapping[str, str], arrays: Sequence[ArraySpec],
                folder: Path, rt: Runtime, store: Store) -> dict[str, str]:
        """Submit one array; record each job as submitted; return job id -> Slurm id."""
        import submitit

        from launchers.slurm_entry import SlurmEntry

        first = plan.get(spec.jobs[0])
        s = self.settings(first)
        deps = []
        if spec.after_corr is not None:
            prev = next(a for a in arrays if a.key == spec.after_corr)
            if len(prev.jobs) == 1:  # single jobs are not arrays: plain afterok
                deps.append(f"afterok:{refs[prev.jobs[0]]}")
            else:
                deps.append(f"aftercorr:{refs[prev.jobs[0]].split('_')[0]}")
        if spec.after_ok:
            deps.append("afterok:" + ":".join(refs[d] for d in spec.after_ok))
        # One Slurm task per rank (submitit starts the entry in each; sweep.distributed pairs them up).
        tasks = tasks_per_node(first, s)
        cpus = max(1, int(s.get("cpus", 1) or 1) // tasks)
        params: dict[str, Any] = {
            "job_name": _job_name(f"sweep-{plan.name}-{spec.label}"),
            "partition": s["partition"], "account": s["account"], "qos": s["qos"], "constraint": s["constraint"],
            "time": int(s.get("time_min", 60)), "nodes": int(s.get("nodes", 1) or 1), "ntasks_per_node": tasks,
            "cpus_per_task": cpus, "signal_delay_s": self.cfg.signal_delay_s,
            "array_parallelism": self.cfg.array_parallelism,
            "setup": [*self.cfg.setup, f"export OMP_NUM_THREADS={shlex.quote(str(cpus))}"],
            "additional_parameters": {"kill-on-invalid-dep": "yes"},
        }
        if int(s.get("gpus", 0) or 0) > 0:
            params["gpus_per_node"] = int(s["gpus"])
        if s.get("mem_gb"):
            params["mem"] = f"{int(float(s['mem_gb']) * 1024)}MB"
        if deps:
            params["dependency"] = ",".join(deps)
        python = shlex.join(self.cfg.python) if self.cfg.python else None
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=self.cfg.max_requeues + 1, python=python)
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        entry_rt = replace(rt, threads=cpus)
        stop_timeout = max(5.0, self.cfg.signal_delay_s * 0.8)
        try:
            with executor.batch():
                sjobs = [executor.submit(SlurmEntry(self.cfg.max_attempts, self.cfg.max_requeues, stop_timeout), payload(plan.get(j)), entry_rt)
                         for j in spec.jobs]
        except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
            raise SweepError("launcher", f"sbatch refused the {spec.label} array ({len(spec.jobs)} jobs): {e}\n"
                             f"  ({len(refs)} jobs submitted before it stay queued; `python -m sweep status` shows them)",
                             "check partition/account/qos/time for that resource class (sinfo, sacctmgr show assoc), then run again") from None
        out = {}
        for jid, sjob in zip(spec.jobs, sjobs):
            # Recorded right after sbatch returns, long before the job can start and write its own state.
            store.set_status(jid, SUBMITTED, backend={"name": "slurm", "job_id": sjob.job_id, "folder": str(folder)})
            out[jid] = sjob.job_id
        return out

    # ---- waiting (wait: true) -------------------------------------------------------------
    def _wait(self, plan: Plan, refs: Mapping[str, str], store: Store, events: Events,
              base_attempts: Mapping[str, int], rt: Runtime) -> dict[str, Outcome]:
        """Poll the store and Slurm until every job in ``refs`` ended; their outcomes.

        The MLflow run of a job Slurm ended under it (scancel, a dead node) is closed as it settles.
        """
        t0 = time.time()
        seen = dict(base_attempts)
        outcomes: dict[str, Outcome] = {}
        while len(outcomes) < len(refs):
            states = query_states({j: {"job_id": r} for j, r in refs.items() if j not in outcomes})
            ended: dict[str, BackendState] = {}
            for jid in [j for j in refs if j not in outcomes]:
                job, st = plan.get(jid), store.state(jid)
                for attempt in range(seen.get(jid, 0) + 1, st.attempts + 1):
                    events.started(job, attempt - base_attempts.get(jid, 0))
                seen[jid] = max(seen.get(jid, 0), st.attempts)
                slurm = states.get(jid, BackendState("UNKNOWN", False, refs[jid]))
                outcome = self._settled(job, st, slurm, store, outcomes, time.time() - t0)
                if outcome is not None:
                    outcome.seconds = float(outcome.metrics.get("job/seconds", 0.0))
                    outcomes[jid] = outcome
                    events.finished(job, outcome)
                    ended[jid] = slurm
            if ended:
                try:
                    close_ended_runs(store, ended, rt.tracking_uri, experiment_id=rt.experiment_id)
                except Exception:
                    pass  # tracking must not stop the wait; the next `status` closes them
            if len(outcomes) < len(refs):
                time.sleep(self.cfg.poll_s)
        return outcomes

    def _settled(self, job: Job, st: JobState, slurm: BackendState, store: Store, outcomes: Mapping[str, Outcome],
                 waited_s: float) -> Outcome | None:
        """The job's outcome if it has ended, else None."""
        if store.is_done(job.id):
            return Outcome(job.id, DONE, metrics=(store.result(job.id) or {}).get("metrics", {}))
        failed_up = [d for d in job.deps if d in outcomes and outcomes[d].state != DONE]
        if failed_up:  # Slurm cancels it (kill-on-invalid-dep); it never started
            return Outcome(job.id, BLOCKED, error=f"upstream failed: {', '.join(failed_up)}")
        if slurm.active or (slurm.state == "UNKNOWN" and waited_s < UNKNOWN_GRACE_S):
            return None
        if slurm.state == "CANCELLED":
            return Outcome(job.id, CANCELLED, error=f"Slurm job {slurm.ref} was cancelled")
        if st.state == PREEMPTED:
            return Outcome(job.id, PREEMPTED, error=f"stopped (Slurm {slurm.state}); it resumes from its checkpoint on the next run")
        if st.state == FAILED and st.error:
            return Outcome(job.id, FAILED, error=st.error)
        return Outcome(job.id, FAILED, error=f"Slurm job {slurm.ref} ended {slurm.state} before the job reported a result"
                                             f"{_log_tail(store, job.id)}")

    # ---- status -------------------------------------------------------------------------------
    @staticmethod
    def backend_states(records: Mapping[str, Mapping[str, Any]]) -> dict[str, BackendState]:
        """squeue / sacct states of the recorded Slurm jobs (see ``slurm_queue``)."""
        return query_states(records)


def _job_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)[:100]


def _log_tail(store: Store, job_id: str, lines: int = 20) -> str:
    """The end of the Slurm job's stderr (submitit's log), when there is one."""
    rec = (read_json(store.job_dir(job_id) / "status.json") or {}).get("backend") or {}
    ref, folder = rec.get("job_id"), rec.get("folder")
    if not ref or not folder:
        return ""
    log = Path(folder) / ref / f"{ref}_0_log.err"
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f" (no log at {log})"
    return f"; last lines of {log}:\n" + "\n".join(tail)
