"""A simulated reader study run through the real core (store + protocol).

Readers' anomaly probabilities follow a binormal model: ``z = d_c * truth + u_case +
e_read`` with ``u ~ N(0, case_sd^2)``, ``e ~ N(0, 1)``; the population AUC in condition c
is ``Phi(d_c / sqrt(2 (case_sd^2 + 1)))``, so the true aided-minus-unaided effect is
known. Reading time is log-normal with a known mean saving when aided.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.readerstudy.protocol import AIOutput, CaseView, ReadingSession
from fetal_viewer.core.store import CaseSpec, Store, utcnow


@dataclass(frozen=True)
class SimTruth:
    auc_unaided: float
    auc_aided: float
    median_time_unaided_s: float
    median_time_aided_s: float

    @property
    def auc_effect(self) -> float:
        return self.auc_aided - self.auc_unaided


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def simulate_study(
    store: Store,
    name: str = "sim",
    *,
    n_readers: int = 5,
    n_cases: int = 60,
    design: str = "sequential",
    d_unaided: float = 1.0,
    d_aided: float = 1.8,
    case_sd: float = 0.6,
    time_unaided_s: float = 40.0,
    time_aided_s: float = 30.0,
    ai_accuracy: float = 0.85,
    seed: int = 0,
) -> SimTruth:
    rng = np.random.default_rng(seed)
    truth_label = [
        CLASSES[0] if rng.random() < 0.5 else CLASSES[1 + int(rng.integers(4))]
        for _ in range(n_cases)
    ]
    specs = [CaseSpec(f"/sim/case_{i:05d}.dcm", lab) for i, lab in enumerate(truth_label)]
    store.create_study(
        name, design=design, labels=CLASSES, cases=specs, seed=seed, washout_days=28.0
    )
    ref = {c.pseudonym: c.reference_label for c in store.list_cases(name)}
    u_case = {p: rng.normal(0, case_sd) for p in ref}
    ai_rng = np.random.default_rng(seed + 1)
    ai_label = {
        p: lab if ai_rng.random() < ai_accuracy else CLASSES[int(ai_rng.integers(5))]
        for p, lab in ref.items()
    }

    def provider(case: CaseView) -> AIOutput:
        top = ai_label[case.pseudonym]
        probs = {lab: (0.8 if lab == top else 0.05) for lab in CLASSES}
        return AIOutput("sim-model-sha", probs)

    now = [utcnow()]

    def clock() -> datetime:
        return now[0]

    for j in range(n_readers):
        rd = f"R{j + 1:02d}"
        store.add_reader(rd, "radiologist", float(2 + j))
        store.enrol(name, rd)
        for _arm in (1, 2) if design == "crossover" else (1,):
            session = ReadingSession(store, name, rd, ai_provider=provider, clock=clock)
            _read_all(
                session,
                ref,
                u_case,
                ai_label,
                rng,
                d_unaided,
                d_aided,
                time_unaided_s,
                time_aided_s,
                lambda: now.__setitem__(0, now[0] + timedelta(seconds=30)),
            )
            now[0] = now[0] + timedelta(days=30)
    sd = math.sqrt(2 * (case_sd**2 + 1))
    return SimTruth(_phi(d_unaided / sd), _phi(d_aided / sd), time_unaided_s, time_aided_s)


def _read_all(
    session: ReadingSession,
    ref: dict[str, str],
    u_case: dict[str, float],
    ai_label: dict[str, str],
    rng: np.random.Generator,
    d_u: float,
    d_a: float,
    t_u: float,
    t_a: float,
    tick: Callable[[], None],
) -> None:
    while (step := session.begin()) is not None:
        p = step.case.pseudonym
        aided = step.condition == "aided"
        truth = ref[p] != "normal"
        d = d_a if aided else d_u
        z = d * truth + u_case[p] + rng.normal()
        prob = round(100 * _phi(z - d / 2))
        if prob >= 50:
            if aided and ai_label[p] != "normal" and rng.random() < 0.8:
                label = ai_label[p]
            else:
                label = (
                    ref[p] if truth and rng.random() < 0.7 else CLASSES[1 + int(rng.integers(4))]
                )
        else:
            label = "normal"
        median = t_a if aided else t_u
        active = int(1000 * median * math.exp(rng.normal(0, 0.3)))
        if aided:
            session.get_ai()
        tick()
        session.submit(label, int(rng.integers(30, 100)), prob, active_ms=active)
