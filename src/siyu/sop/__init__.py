"""SOPs and the task engine (docs/sop.md): the breathing policy (``policy``), the pure,
set-based day planner (``planner``), definitions and templates (``schemas``, ``templates``),
the store (``models``, ``actions``, ``queries``) and the engine that enrols, advances, plans and
writes decisions and the outbox (``engine``, ``state``, ``cron``). Console pages, the guide
workbench and the delivery of outbox rows (channels) come later."""

from siyu.sop.planner import (
    NEVER,
    REASONS,
    STATUSES,
    Candidates,
    CustomerState,
    Decisions,
    History,
    Reason,
    Simulation,
    epoch,
    plan,
    simulate,
)
from siyu.sop.policy import CHANNELS, KINDS, BreathingPolicy, Caps, MassQuota

__all__ = [
    "CHANNELS",
    "KINDS",
    "NEVER",
    "REASONS",
    "STATUSES",
    "BreathingPolicy",
    "Candidates",
    "Caps",
    "CustomerState",
    "Decisions",
    "History",
    "MassQuota",
    "Reason",
    "Simulation",
    "epoch",
    "plan",
    "simulate",
]
